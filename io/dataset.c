#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rng.h"

int dataset_open(Dataset *ds, const Config *c, char *err, size_t errlen) {
    memset(ds, 0, sizeof *ds);
    ds->seq_len = c->seq_len;
    ds->batch = c->batch;
    ds->vocab_size = c->vocab_size;
    ds->dup_alphabet = c->dup_alphabet;
    ds->seed = c->seed;
    snprintf(ds->path, sizeof ds->path, "%s", c->data);
    if (!strcmp(c->data, "random")) {
        ds->kind = DATA_RANDOM;
        return 0;
    }
    if (!strcmp(c->data, "dup")) {
        ds->kind = DATA_DUP;
        if (c->seq_len < 4 || c->seq_len % 2) {
            snprintf(err, errlen, "seq_len: the duplication task needs an even seq_len >= 4, got %d", c->seq_len);
            return -1;
        }
        return 0;
    }
    ds->kind = DATA_TEXT;
    if (c->vocab_size < 256) {
        snprintf(err, errlen, "vocab_size: byte-level text needs vocab_size >= 256, got %d", c->vocab_size);
        return -1;
    }
    int fd = open(c->data, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "data: cannot open '%s': %s", c->data, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "data: '%s' is not a regular file", c->data);
        close(fd);
        return -1;
    }
    if ((size_t)st.st_size < (size_t)c->seq_len + 1) {
        snprintf(err, errlen, "data: '%s' has %lld bytes, fewer than seq_len+1=%d", c->data,
                 (long long)st.st_size, c->seq_len + 1);
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "data: cannot map '%s': %s", c->data, strerror(errno));
        return -1;
    }
    ds->bytes = p;
    ds->n_bytes = (size_t)st.st_size;
    return 0;
}

void dataset_close(Dataset *ds) {
    if (ds->bytes) munmap((void *)ds->bytes, ds->n_bytes);
    memset(ds, 0, sizeof *ds);
}

void dataset_batch(const Dataset *ds, uint32_t step, size_t first_seq, int n_seq, int *tokens, int *targets) {
    const int L = ds->seq_len;
    const uint32_t tag = rng_tag(RNG_DATA, ds->kind, 0);
    for (int b = 0; b < n_seq; b++) {
        int *tok = tokens + (size_t)b * L, *tgt = targets + (size_t)b * L;
        uint64_t stream = (uint64_t)(first_seq + (size_t)b) << 32;  // per-sequence counter space
        if (ds->kind == DATA_TEXT) {
            size_t off = rng_bits64(ds->seed, stream, step, tag) % (ds->n_bytes - (size_t)L);
            for (int i = 0; i < L; i++) {
                tok[i] = ds->bytes[off + i];
                tgt[i] = ds->bytes[off + i + 1];
            }
        } else if (ds->kind == DATA_RANDOM) {
            for (int i = 0; i <= L; i++) {
                int t = (int)(rng_bits64(ds->seed, stream | (uint32_t)i, step, tag) % (uint64_t)ds->vocab_size);
                if (i < L) tok[i] = t;
                if (i > 0) tgt[i - 1] = t;
            }
        } else {
            // "0 w 0 w": w of L/2 - 1 symbols from 1 .. dup_alphabet-1.
            int w = L / 2 - 1;
            tok[0] = 0;
            tok[w + 1] = 0;
            for (int i = 0; i < w; i++) {
                int sym = 1 + (int)(rng_bits64(ds->seed, stream | (uint32_t)i, step, tag) % (uint64_t)(ds->dup_alphabet - 1));
                tok[1 + i] = sym;
                tok[w + 2 + i] = sym;
            }
            for (int i = 0; i < L; i++)
                tgt[i] = i >= dup_first_scored(L) && i <= dup_last_scored(L) ? tok[i + 1] : -1;
        }
    }
}
