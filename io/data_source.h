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

// Append a document of len tokens to a split.
void data_add_doc(DataSplit *s, const void *data, size_t len);

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

#define ENWIK8_BYTES 100000000u
#define ENWIK8_TRAIN_END 90000000u
#define ENWIK8_VALIDATION_END 95000000u
#define LLMC_TOKENS_MAGIC 20240520
#define LLMC_TOKENS_VERSION 1
#define LLMC_HEADER_INTS 256
