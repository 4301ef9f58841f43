// Encoding the text sources with a tokenizer, once: the byte documents a
// reader collected are encoded into a token cache file and replaced by the
// cached tokens, memory-mapped like every other source.
//
// The cache lives beside the data (<file>.tokens-<key>.bin, or
// <dir>/tokens-<key>.bin for a PG19 directory), or in out_dir when the
// data's place is not writable. <key> (16 hex digits) is an FNV-1a hash of
// the tokenizer model's bytes, the format, split_fractions, every data file's
// path, size and modification time and every document's length: another
// model or changed data is another file, and a file of this key is the
// encoding of exactly this data. Writers take an exclusive lock on
// <cache>.lock and write through <cache>.tmp.<pid> and a rename, so a second
// rank (or run) started at the same time waits for the first and then maps
// its file instead of encoding again.
//
// Layout (little-endian): "RFTOKC1\n", u64 key, u32 token_bytes (2 or 4),
// u32 0, u64 n_docs[3], u64 doc_tokens[sum n_docs], then the tokens of every
// document of train, validation, test in order.
//
// Documents are encoded in chunks of at most CHUNK_BYTES that end after a
// newline (or, in a line longer than that, at a character boundary), in
// parallel over OpenMP threads. The models of `reformer tokenize` have no
// piece containing a newline (they are trained on lines), so a cut after a
// newline gives the same tokens as encoding the document whole.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_source.h"
#include "util.h"

#define CACHE_MAGIC "RFTOKC1\n"
#define CHUNK_BYTES ((size_t)1 << 20)
#define CHUNKS_PER_ROUND 64

typedef struct {
    char magic[8];
    uint64_t key;
    uint32_t token_bytes, zero;
    uint64_t n_docs[N_SPLITS];
} CacheHeader;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t cache_key(const Dataset *ds, const Config *c) {
    uint64_t h = 1469598103934665603ull, id = tokenizer_identity(ds->tok);
    h = fnv(h, CACHE_MAGIC, 8);
    h = fnv(h, &id, sizeof id);
    h = fnv(h, &ds->kind, sizeof ds->kind);
    h = fnv(h, c->split_fractions, sizeof c->split_fractions);
    struct stat st;
    for (long i = 0; i < ds->n_maps; i++) {
        const char *p = ds->maps[i].path;
        h = fnv(h, p, strlen(p) + 1);
        if (stat(p, &st) == 0) {
            int64_t v[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
            h = fnv(h, v, sizeof v);
        }
    }
    if (stat(ds->path, &st) == 0) {  // an enwik8.zip is not mapped
        int64_t v[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec};
        h = fnv(h, v, sizeof v);
    }
    for (int s = 0; s < N_SPLITS; s++)
        for (long d = 0; d < ds->split[s].n_docs; d++) h = fnv(h, &ds->split[s].docs[d].len, sizeof(size_t));
    return h;
}

// The cache path: beside the data when that directory is writable, else in
// out_dir.
static void cache_path(const Dataset *ds, const Config *c, uint64_t key, char *out, size_t cap) {
    struct stat st;
    int is_dir = stat(ds->path, &st) == 0 && S_ISDIR(st.st_mode);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", ds->path);
    if (!is_dir) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
    }
    if (access(dir, W_OK) == 0) {
        if (is_dir) snprintf(out, cap, "%s/tokens-%016llx.bin", ds->path, (unsigned long long)key);
        else snprintf(out, cap, "%s.tokens-%016llx.bin", ds->path, (unsigned long long)key);
        return;
    }
    mkdir(c->out_dir, 0755);  // one level; a failure shows when the cache is written
    const char *base = strrchr(ds->path, '/') ? strrchr(ds->path, '/') + 1 : ds->path;
    snprintf(out, cap, "%s/%s.tokens-%016llx.bin", c->out_dir, base, (unsigned long long)key);
}

// Map a cache file and point the splits' documents into it. 1 if the file
// is absent, 0 when mapped, -1 (with a message) when it is damaged.
static int map_cache(Dataset *ds, const char *path, uint64_t key, char *err, size_t errlen) {
    if (access(path, F_OK) != 0) return 1;
    const void *map;
    size_t size;
    if (data_map_file(ds, "tokenizer", path, &map, &size, err, errlen)) return -1;
    CacheHeader h;
    long n_docs = 0;
    if (size >= sizeof h) {
        memcpy(&h, map, sizeof h);
        for (int s = 0; s < N_SPLITS; s++) n_docs += (long)h.n_docs[s];
    }
    const char *why = NULL;
    if (size < sizeof h || memcmp(h.magic, CACHE_MAGIC, 8)) why = "not a token cache";
    else if (h.key != key) why = "its key is not the data's";
    else if (h.token_bytes != 2 && h.token_bytes != 4) why = "a bad token width";
    else if (n_docs < 0 || (size_t)n_docs > (size - sizeof h) / 8) why = "a bad document count";
    const uint64_t *lens = (const uint64_t *)((const char *)map + sizeof h);
    size_t total = 0;
    for (long d = 0; !why && d < n_docs; d++) total += lens[d];
    if (!why && size != sizeof h + 8 * (size_t)n_docs + total * h.token_bytes) why = "a size that its header does not give";
    for (int s = 0; !why && s < N_SPLITS; s++)
        if ((long)h.n_docs[s] != ds->split[s].n_docs) why = "other documents than the data";
    if (why)
        return data_fail(err, errlen, "tokenizer: the token cache '%s' is damaged (%s): remove it to encode again", path,
                         why);
    ds->token_bytes = (int)h.token_bytes;
    const char *tokens = (const char *)(lens + n_docs);
    long k = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        DataSplit *sp = &ds->split[s];
        sp->n_tokens = 0;
        for (long d = 0; d < sp->n_docs; d++, k++) {
            sp->docs[d] = (DataDoc){.data = tokens, .len = lens[k]};
            sp->n_tokens += lens[k];
            tokens += lens[k] * h.token_bytes;
        }
    }
    snprintf(ds->token_cache, sizeof ds->token_cache, "%s", path);
    return 0;
}

typedef struct {
    long doc;  // index over all splits' documents
    const uint8_t *text;
    size_t len;
} Chunk;

// Cut a document into chunks: each ends after a newline, or when a line is
// longer than CHUNK_BYTES, at a UTF-8 character boundary.
static void chunk_doc(const uint8_t *text, size_t n, long doc, Chunk **chunks, long *n_chunks, long *cap) {
    for (size_t begin = 0; begin < n;) {
        size_t end = begin + CHUNK_BYTES;
        if (end >= n) end = n;
        else {
            size_t cut = end;
            while (cut > begin && text[cut - 1] != '\n') cut--;
            if (cut == begin) {  // no newline: back up over continuation bytes
                cut = end;
                for (int k = 0; k < 3 && cut > begin + 1 && (text[cut] & 0xC0) == 0x80; k++) cut--;
            }
            end = cut;
        }
        if (*n_chunks == *cap) {
            *cap = *cap ? 2 * *cap : 256;
            *chunks = realloc(*chunks, (size_t)*cap * sizeof **chunks);
            if (!*chunks) FATAL(NULL, "out of memory listing chunks to encode");
        }
        (*chunks)[(*n_chunks)++] = (Chunk){.doc = doc, .text = text + begin, .len = end - begin};
        begin = end;
    }
}

static int write_all(int fd, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w, n -= (size_t)w;
    }
    return 0;
}

// Encode every document of ds into path (through a temporary file).
static int encode_into(Dataset *ds, const char *path, uint64_t key, char *err, size_t errlen) {
    double t0 = now_seconds();
    long n_docs = 0;
    CacheHeader h = {.key = key, .token_bytes = tokenizer_vocab_size(ds->tok) <= 65536 ? 2 : 4};
    memcpy(h.magic, CACHE_MAGIC, 8);
    Chunk *chunks = NULL;
    long n_chunks = 0, cap = 0;
    size_t n_bytes = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        h.n_docs[s] = (uint64_t)ds->split[s].n_docs;
        for (long d = 0; d < ds->split[s].n_docs; d++, n_docs++) {
            const DataDoc *doc = &ds->split[s].docs[d];
            chunk_doc(doc->data, doc->len, n_docs, &chunks, &n_chunks, &cap);
            n_bytes += doc->len;
        }
    }
    uint64_t *lens = checked_calloc((size_t)n_docs + 1, sizeof *lens);
    char tmp[2300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0) {
        rc = data_fail(err, errlen, "tokenizer: cannot write the token cache '%s': %s", tmp, strerror(errno));
        goto done;
    }
    off_t tokens_at = (off_t)(sizeof h + 8 * (size_t)n_docs);
    if (lseek(fd, tokens_at, SEEK_SET) != tokens_at) rc = -1;
    for (long r0 = 0; rc == 0 && r0 < n_chunks; r0 += CHUNKS_PER_ROUND) {
        long r1 = r0 + CHUNKS_PER_ROUND < n_chunks ? r0 + CHUNKS_PER_ROUND : n_chunks;
        int32_t *ids[CHUNKS_PER_ROUND] = {0};
        size_t n_ids[CHUNKS_PER_ROUND] = {0}, caps[CHUNKS_PER_ROUND] = {0};
        int failed = 0;
        char chunk_err[512] = "";
#pragma omp parallel for schedule(dynamic, 1)
        for (long i = r0; i < r1; i++) {
            char e[512];
            if (tokenizer_encode(ds->tok, chunks[i].text, chunks[i].len, &ids[i - r0], &n_ids[i - r0], &caps[i - r0], e,
                                 sizeof e)) {
#pragma omp critical(encode_error)
                {
                    failed = 1;
                    snprintf(chunk_err, sizeof chunk_err, "%s", e);
                }
            }
        }
        if (failed) rc = data_fail(err, errlen, "%s", chunk_err);
        for (long i = r0; i < r1; i++) {
            size_t n = n_ids[i - r0];
            lens[chunks[i].doc] += n;
            if (rc == 0 && h.token_bytes == 2) {
                uint16_t *narrow = (uint16_t *)ids[i - r0];  // in place: each id fits
                for (size_t k = 0; k < n; k++) narrow[k] = (uint16_t)ids[i - r0][k];
            }
            if (rc == 0 && write_all(fd, ids[i - r0], n * h.token_bytes)) rc = -1;
            free(ids[i - r0]);
        }
    }
    if (rc == 0 && (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
                    pwrite(fd, lens, 8 * (size_t)n_docs, sizeof h) != (ssize_t)(8 * (size_t)n_docs) || fsync(fd)))
        rc = -1;
    if (close(fd) != 0) rc = -1;
    if (rc == 0 && rename(tmp, path) != 0) rc = -1;
    if (rc) {
        if (!err[0] || strncmp(err, "tokenizer: encoding", 19))
            data_fail(err, errlen, "tokenizer: cannot write the token cache '%s': %s", path, strerror(errno));
        unlink(tmp);
    } else {
        double dt = now_seconds() - t0;
        size_t n_tokens = 0;
        for (long d = 0; d < n_docs; d++) n_tokens += lens[d];
        fprintf(stderr, "tokenizer: encoded %.1f MB into %zu tokens (%.2f bytes/token) in %.1f s (%.2f MB/s) -> %s\n",
                (double)n_bytes / 1e6, n_tokens, n_tokens ? (double)n_bytes / (double)n_tokens : 0, dt,
                dt > 0 ? (double)n_bytes / 1e6 / dt : 0, path);
    }
done:
    free(lens);
    free(chunks);
    return rc;
}

int data_tokenize(Dataset *ds, const Config *c, char *err, size_t errlen) {
    const uint64_t key = cache_key(ds, c);
    char path[2200], lock_path[2300];
    cache_path(ds, c, key, path, sizeof path);
    int rc = map_cache(ds, path, key, err, errlen);
    if (rc <= 0) return rc;
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0)
        return data_fail(err, errlen, "tokenizer: cannot create the token cache lock '%s': %s", lock_path,
                         strerror(errno));
    while (flock(lock, LOCK_EX) != 0)
        if (errno != EINTR) {
            int e = errno;
            close(lock);
            return data_fail(err, errlen, "tokenizer: cannot lock '%s': %s", lock_path, strerror(e));
        }
    rc = map_cache(ds, path, key, err, errlen);  // another process may have written it meanwhile
    if (rc == 1) {
        err[0] = '\0';
        rc = encode_into(ds, path, key, err, errlen);
        if (rc == 0) rc = map_cache(ds, path, key, err, errlen);
    }
    close(lock);  // releases the lock; the lock file stays (removing it would race with a waiter)
    return rc;
}
