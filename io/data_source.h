// What the dataset readers share (internal to io/): each reader fills the
// documents of the three splits of a Dataset; dataset.c then indexes the
// windows. Errors are one line naming the key and the file, as everywhere.
#pragma once
#include <stddef.h>
#include <sys/types.h>

#include "dataset.h"

// Format err (one line) and return -1.
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int data_fail(char *err, size_t errlen, const char *fmt, ...);

// What a file of this mode is, for messages ("a FIFO (named pipe)", ...).
const char *data_file_kind(mode_t mode);

// Refuse path, which is not a regular file: one line naming key, path and
// what it is. Returns -1.
int data_refuse_special(const char *key, const char *path, mode_t mode, char *err, size_t errlen);

// Map a whole regular, non-empty file read-only and keep the mapping in ds
// (dataset_close releases it). Errors name `key` and the path: missing,
// not a regular file (a FIFO is refused at once, never waited on), empty.
int data_map_file(Dataset *ds, const char *key, const char *path, const void **data, size_t *len, char *err,
                  size_t errlen);

// Reads of mapped data are guarded against SIGBUS, which is what a read of a
// mapped page gets once its file was truncated (or rewritten in place, which
// truncates first) under the trainer. A reader brackets its reads:
//
//     sigjmp_buf jump;
//     if (sigsetjmp(jump, 0)) data_mapped_read_failed(ds);  // does not return
//     data_guard_begin(&jump);
//     ... reads of mapped documents ...
//     data_guard_end();
//
// and a SIGBUS inside lands in data_mapped_read_failed, which stops the
// program with one line naming the file, its size then and now. Outside a
// guard a SIGBUS keeps its default action. The guard is a thread-local
// pointer, so setting it costs nothing per batch (no system call); checking
// every file's size per batch instead would cost a stat per PG19 book and
// still race with a truncation between the check and the read.
#include <setjmp.h>
void data_guard_begin(sigjmp_buf *jump);
void data_guard_end(void);
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void data_mapped_read_failed(const Dataset *ds);

// Append a document of len tokens to a split.
void data_add_doc(DataSplit *s, const void *data, size_t len);

// Where the splits of n items end (train, validation, test) by the shares
// in fractions, each boundary rounded to the nearest item.
void data_split_ends(size_t n, const double fractions[3], size_t ends[N_SPLITS]);

// One run of n tokens (token_bytes each) cut into train, validation and test
// documents, contiguously in that order, by the shares in fractions.
void data_split_contiguous(Dataset *ds, const void *data, size_t n, const double fractions[3]);

// Byte-level formats need every byte value to be a token.
int data_require_byte_vocab(const Dataset *ds, char *err, size_t errlen);

// The readers: path is ds->path; each fills ds->split[*] with documents.
int data_open_text(Dataset *ds, const Config *c, char *err, size_t errlen);
int data_open_enwik8(Dataset *ds, char *err, size_t errlen);
int data_open_pg19(Dataset *ds, char *err, size_t errlen);
int data_open_tokens(Dataset *ds, const Config *c, char *err, size_t errlen);
// npz and png (data_image.c): every image decoded into ds->owned, raster order.
int data_open_images(Dataset *ds, const Config *c, char *err, size_t errlen);
// data_format=auto for a directory: npz when it holds *.npz, png when it (or
// its train/) holds *.png, else pg19.
DataKind data_image_dir_kind(const char *dir);

// Replace the byte documents of a text source by their encoding with ds->tok,
// from the token cache (data_tokenize.c; encoded into it first if absent).
int data_tokenize(Dataset *ds, const Config *c, char *err, size_t errlen);

#define ENWIK8_BYTES 100000000u
#define ENWIK8_TRAIN_END 90000000u
#define ENWIK8_VALIDATION_END 95000000u
#define LLMC_TOKENS_MAGIC 20240520
#define LLMC_TOKENS_VERSION 1
#define LLMC_HEADER_INTS 256
