// Image datasets (io/dataset.h, formats npz and png): every image is decoded
// once into ds->owned, in raster order (row, column, channel), one document
// of H*W*C bytes each.
//
// npz: the downsampled-ImageNet batches (Chrabaszcz et al. 2017; the
// Reformer's Imagenet64) are numpy .npz archives (zip, read with libzip)
// whose entry data.npy is uint8 [N, H*W*C], each row channel-planar: the H*W
// red values, then green, then blue. The .npy header is parsed here (format
// versions 1 to 3: magic, version, header length, a Python dict literal).
//
// png: PNG files decoded by libpng (io/image_png.h), fitted to H x W by
// image_fit.
#define _GNU_SOURCE  // strverscmp: "train_data_batch_2" before "..._10"
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "data_source.h"
#include "image_png.h"
#include "util.h"

// ------------------------------------------------------------ image storage

// A slot for one more image of split s, at the end of ds->owned. Documents
// hold offsets until fix_pointers: owned moves as it grows.
static uint8_t *new_image(Dataset *ds, DataSplit *s) {
    const size_t L = (size_t)ds->seq_len;
    if (ds->owned_len + L > ds->owned_cap) {
        size_t cap = ds->owned_cap ? ds->owned_cap : 1 << 20;
        while (cap < ds->owned_len + L) cap *= 2;
        void *p = realloc(ds->owned, cap);
        if (!p) FATAL("use fewer or smaller images", "out of memory holding %zu bytes of images", cap);
        ds->owned = p;
        ds->owned_cap = cap;
    }
    data_add_doc(s, (const void *)(uintptr_t)ds->owned_len, L);
    ds->owned_len += L;
    return (uint8_t *)ds->owned + ds->owned_len - L;
}

static void fix_pointers(Dataset *ds) {
    for (int s = 0; s < N_SPLITS; s++)
        for (long d = 0; d < ds->split[s].n_docs; d++)
            ds->split[s].docs[d].data = (const uint8_t *)ds->owned + (uintptr_t)ds->split[s].docs[d].data;
}

// Images of one source read into the train split, dealt into the three
// splits by split_fractions, in order (data_split_ends, counted in images).
static void split_by_fractions(Dataset *ds, const double fractions[3]) {
    DataSplit *train = &ds->split[SPLIT_TRAIN];
    const long n = train->n_docs;
    DataDoc *all = checked_calloc((size_t)(n ? n : 1), sizeof *all);
    memcpy(all, train->docs, (size_t)n * sizeof *all);
    size_t ends[N_SPLITS];
    data_split_ends((size_t)n, fractions, ends);
    train->n_docs = 0;
    train->n_tokens = 0;
    for (long i = 0; i < n; i++) {
        Split s = (size_t)i < ends[0] ? SPLIT_TRAIN : (size_t)i < ends[1] ? SPLIT_VALIDATION : SPLIT_TEST;
        data_add_doc(&ds->split[s], all[i].data, all[i].len);
    }
    free(all);
}

// Raster order of one channel-planar image: out[(p * C) + c] = in[c * HW + p].
static void planar_to_raster(const uint8_t *in, uint8_t *out, int HW, int C) {
    for (int p = 0; p < HW; p++)
        for (int c = 0; c < C; c++) out[(size_t)p * C + c] = in[(size_t)c * HW + p];
}

// ---------------------------------------------------------------------- npz

// The value text after 'key': in a .npy header dict, or NULL.
static const char *dict_value(const char *header, const char *key) {
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s':", key);
    const char *p = strstr(header, quoted);
    if (!p) return NULL;
    p += strlen(quoted);
    while (*p == ' ') p++;
    return p;
}

static int zip_error_line(zip_t *z, zip_file_t *f, char *err, size_t errlen, const char *path, const char *what) {
    data_fail(err, errlen, "data: '%s' is not a readable .npz archive (%s): %s", path, what,
              zip_error_strerror(f ? zip_file_get_error(f) : zip_get_error(z)));
    if (f) zip_fclose(f);
    zip_discard(z);
    return -1;
}

static int read_exact(zip_file_t *f, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        zip_int64_t r = zip_fread(f, (char *)buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

// The array data.npy of one .npz: its images, converted to raster order, into split s.
static int read_npz(Dataset *ds, const char *path, DataSplit *s, char *err, size_t errlen) {
    const int H = ds->image_shape[0], W = ds->image_shape[1], C = ds->image_shape[2];
    const long L = (long)H * W * C;
    int code;
    zip_t *z = zip_open(path, ZIP_RDONLY, &code);
    if (!z) {
        zip_error_t e;
        zip_error_init_with_code(&e, code);
        int rc = data_fail(err, errlen, "data: cannot read '%s' as an .npz (zip) archive: %s", path,
                           zip_error_strerror(&e));
        zip_error_fini(&e);
        return rc;
    }
    zip_int64_t index = zip_name_locate(z, "data.npy", 0);
    if (index < 0) {
        zip_discard(z);
        return data_fail(err, errlen, "data: '%s' holds no array 'data' (data.npy): not a downsampled-ImageNet batch",
                         path);
    }
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)index, 0);
    if (!f) return zip_error_line(z, NULL, err, errlen, path, "opening data.npy");
    // Magic "\x93NUMPY", version major.minor, header length (2 bytes in
    // version 1, 4 after), then the header dict.
    unsigned char pre[12];
    if (read_exact(f, pre, 8) || memcmp(pre, "\x93NUMPY", 6)) {
        zip_fclose(f);
        zip_discard(z);
        return data_fail(err, errlen, "data: '%s': data.npy is not a .npy array (no \\x93NUMPY magic)", path);
    }
    size_t header_len;
    if (pre[6] == 1) {
        if (read_exact(f, pre + 8, 2)) return zip_error_line(z, f, err, errlen, path, "data.npy header");
        header_len = pre[8] | (size_t)pre[9] << 8;
    } else {
        if (read_exact(f, pre + 8, 4)) return zip_error_line(z, f, err, errlen, path, "data.npy header");
        header_len = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    char header[4096];
    if (header_len >= sizeof header || read_exact(f, header, header_len)) {
        zip_fclose(f);
        zip_discard(z);
        return data_fail(err, errlen, "data: '%s': data.npy has a damaged header (%zu bytes)", path, header_len);
    }
    header[header_len] = '\0';
    while (header_len > 0 && (header[header_len - 1] == '\n' || header[header_len - 1] == ' '))
        header[--header_len] = '\0';  // one line in messages
    const char *descr = dict_value(header, "descr"), *order = dict_value(header, "fortran_order"),
               *shape = dict_value(header, "shape");
    long n = -1, per = -1;
    int bad = !descr || !order || !shape || (strncmp(descr, "'|u1'", 5) && strncmp(descr, "'<u1'", 5)) ||
              strncmp(order, "False", 5) || sscanf(shape, "(%ld, %ld)", &n, &per) != 2 || n < 0;
    if (bad) {
        zip_fclose(f);
        zip_discard(z);
        return data_fail(err, errlen, "data: '%s': data.npy is not a C-order uint8 [N, H*W*C] array (header %s)", path,
                         header);
    }
    if (per != L) {
        zip_fclose(f);
        zip_discard(z);
        return data_fail(err, errlen,
                         "data: '%s': data.npy has %ld values per image, not the %ld of image_shape %dx%dx%d "
                         "(Imagenet64 batches hold 12288, Imagenet32 3072)",
                         path, per, L, H, W, C);
    }
    uint8_t *planar = checked_calloc((size_t)L, 1);
    long i = 0;
    for (; i < n; i++) {
        if (read_exact(f, planar, (size_t)L)) break;
        planar_to_raster(planar, new_image(ds, s), H * W, C);
    }
    free(planar);
    // Reading past the end checks the entry's CRC: a damaged archive fails here.
    char extra;
    zip_int64_t tail = i == n ? zip_fread(f, &extra, 1) : -1;
    if (i != n || tail != 0) {
        data_fail(err, errlen, "data: '%s': data.npy is truncated or damaged (%ld of %ld images read): %s", path, i, n,
                  zip_error_strerror(zip_file_get_error(f)));
        zip_fclose(f);
        zip_discard(z);
        return -1;
    }
    zip_fclose(f);
    zip_discard(z);
    return 0;
}

// ----------------------------------------------------------------- listings

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int by_version(const void *a, const void *b) { return strverscmp(*(char *const *)a, *(char *const *)b); }

// The names in dir ending with suffix (and starting with prefix, when given),
// in natural order ("2" before "10"). *n: their count; NULL when the
// directory cannot be read.
static char **list_dir(const char *dir, const char *prefix, const char *suffix, long *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    long cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!has_suffix(e->d_name, suffix) || (prefix && strncmp(e->d_name, prefix, strlen(prefix)))) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, (size_t)cap * sizeof *names);
            if (!names) FATAL(NULL, "out of memory listing %s", dir);
        }
        names[*n] = strdup(e->d_name);
        if (!names[(*n)++]) FATAL(NULL, "out of memory listing %s", dir);
    }
    closedir(d);
    if (*n > 1) qsort(names, (size_t)*n, sizeof *names, by_version);
    if (!names) names = checked_calloc(1, sizeof *names);
    return names;
}

static void free_list(char **names, long n) {
    for (long i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// How many names of dir end with suffix.
static long count_files(const char *dir, const char *suffix) {
    long n;
    char **names = list_dir(dir, NULL, suffix, &n);
    if (names) free_list(names, n);
    return n;
}

DataKind data_image_dir_kind(const char *dir) {
    if (count_files(dir, ".npz") > 0) return DATA_NPZ;
    char train[4096];
    snprintf(train, sizeof train, "%s/train", dir);
    return count_files(dir, ".png") > 0 || count_files(train, ".png") > 0 ? DATA_PNG : DATA_PG19;
}

// Every file of dir named prefix*suffix, in natural order, read by `read` into split s.
static int read_all(Dataset *ds, const char *dir, const char *prefix, const char *suffix, DataSplit *s,
                    int (*read)(Dataset *, const char *, DataSplit *, char *, size_t), char *err, size_t errlen) {
    long n;
    char **names = list_dir(dir, prefix, suffix, &n);
    if (!names) return data_fail(err, errlen, "data: cannot read the directory '%s': %s", dir, strerror(errno));
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path) {
            rc = data_fail(err, errlen, "data: path too long: '%s/%s'", dir, names[i]);
            break;
        }
        rc = read(ds, path, s, err, errlen);
    }
    free_list(names, n);
    return rc;
}

// ---------------------------------------------------------------------- png

static int read_png(Dataset *ds, const char *path, DataSplit *s, char *err, size_t errlen) {
    const int H = ds->image_shape[0], W = ds->image_shape[1], C = ds->image_shape[2];
    uint8_t *pixels;
    int w, h;
    if (png_read(path, C, &pixels, &w, &h, err, errlen)) return -1;
    long count = image_fit_count(ds->image_fit, w, h, W, H, path, err, errlen);
    for (long i = 0; i < count; i++) image_fit_take(ds->image_fit, pixels, w, h, C, W, H, i, new_image(ds, s));
    free(pixels);
    return count < 0 ? -1 : 0;
}

// ------------------------------------------------------------------- open

int data_open_images(Dataset *ds, const Config *c, char *err, size_t errlen) {
    if (data_require_byte_vocab(ds, err, errlen)) return -1;
    const char *path = ds->path;
    struct stat st;
    if (stat(path, &st) != 0) return data_fail(err, errlen, "data: cannot open '%s': %s", path, strerror(errno));
    int rc;
    if (ds->kind == DATA_NPZ && !S_ISDIR(st.st_mode)) {  // one file: split by image
        if (!S_ISREG(st.st_mode)) return data_refuse_special("data", path, st.st_mode, err, errlen);
        rc = read_npz(ds, path, &ds->split[SPLIT_TRAIN], err, errlen);
        if (rc == 0) split_by_fractions(ds, c->split_fractions);
    } else if (ds->kind == DATA_NPZ) {  // Imagenet64's own split
        rc = read_all(ds, path, "train_", ".npz", &ds->split[SPLIT_TRAIN], read_npz, err, errlen);
        if (rc == 0) rc = read_all(ds, path, "val", ".npz", &ds->split[SPLIT_VALIDATION], read_npz, err, errlen);
        if (rc == 0) rc = read_all(ds, path, "test", ".npz", &ds->split[SPLIT_TEST], read_npz, err, errlen);
    } else if (!S_ISDIR(st.st_mode)) {
        return data_fail(err, errlen, "data: '%s' is not a directory; data_format=png expects a directory of PNG "
                         "files (or train/, validation/, test/ of them)", path);
    } else {
        char train[4096];
        snprintf(train, sizeof train, "%s/train", path);
        if (is_dir(train)) {  // the directory's own split
            rc = 0;
            for (int s = 0; s < N_SPLITS && rc == 0; s++) {
                char dir[4096];
                snprintf(dir, sizeof dir, "%s/%s", path, split_name((Split)s));
                if (s == SPLIT_TRAIN || is_dir(dir))
                    rc = read_all(ds, dir, NULL, ".png", &ds->split[s], read_png, err, errlen);
            }
        } else {
            rc = read_all(ds, path, NULL, ".png", &ds->split[SPLIT_TRAIN], read_png, err, errlen);
            if (rc == 0) split_by_fractions(ds, c->split_fractions);
        }
    }
    if (rc == 0) fix_pointers(ds);
    return rc;
}
