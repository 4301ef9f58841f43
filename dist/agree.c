// Config and data agreement over the ranks (agree.h).
#include "agree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_OFFSET 0xcbf29ce484222325ull

// Line `index` of text (without its newline) into out.
static void line_at(const char *text, int index, char *out, size_t cap) {
    const char *p = text;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p || !*p) {
        snprintf(out, cap, "(nothing)");
        return;
    }
    const char *end = strchr(p, '\n');
    snprintf(out, cap, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
}

// Index of the first line where a and b differ.
static int first_difference(const char *a, const char *b) {
    int line = 0;
    for (; *a && *a == *b; a++, b++)
        if (*a == '\n') line++;
    return line;
}

// The name of a "name=value" line.
static void name_of(const char *line, char *out, size_t cap) {
    const char *eq = strchr(line, '=');
    snprintf(out, cap, "%.*s", (int)(eq ? eq - line : (long)strlen(line)), line);
}

// text: this rank's "name=value" lines. what: "config" or "data"; hint ends
// the message.
static int agree_lines(const Dist *d, const char *text, const char *what, const char *hint, char *err,
                       size_t errlen) {
    if (d->world <= 1) return 0;
    uint64_t mine = fnv1a(FNV_OFFSET, text, strlen(text)), root = mine;
    dist_bcast(d, DIST_WORLD, &root, sizeof root, 0);
    double *differs = checked_calloc((size_t)d->world, sizeof *differs);
    differs[d->rank] = mine != root;
    dist_allreduce_sum_f64(d, DIST_WORLD, differs, (size_t)d->world);
    int first = -1, n_differ = 0;
    for (int r = 0; r < d->world; r++)
        if (differs[r] != 0) {
            n_differ++;
            if (first < 0) first = r;
        }
    free(differs);
    if (first < 0) return 0;
    // Rank 0's text to every rank; the first differing rank words the
    // message and sends it to all.
    uint64_t len = d->rank == 0 ? strlen(text) : 0;
    dist_bcast(d, DIST_WORLD, &len, sizeof len, 0);
    char *theirs = checked_calloc((size_t)len + 1, 1);
    if (d->rank == 0) memcpy(theirs, text, (size_t)len);
    dist_bcast(d, DIST_WORLD, theirs, (size_t)len, 0);
    char msg[1024] = "";
    if (d->rank == first) {
        int at = first_difference(text, theirs);
        char line_mine[400], line_root[400], name[128];
        line_at(text, at, line_mine, sizeof line_mine);
        line_at(theirs, at, line_root, sizeof line_root);
        name_of(line_root, name, sizeof name);
        snprintf(msg, sizeof msg, "%s: ranks disagree on %s: rank %d has %s, rank 0 has %s (%d of %d ranks differ; %s)",
                 what, name, first, line_mine, line_root, n_differ, d->world, hint);
    }
    free(theirs);
    dist_bcast(d, DIST_WORLD, msg, sizeof msg, first);
    snprintf(err, errlen, "%s", msg);
    return -1;
}

int dist_agree_config(const Dist *d, const Config *c, char *err, size_t errlen) {
    if (d->world <= 1) return 0;
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f) FATAL(NULL, "out of memory");
    config_print(c, f);
    fclose(f);
    int rc = agree_lines(d, text, "config", "start every rank with the same config", err, errlen);
    free(text);
    return rc;
}

// Up to 64 documents of a split, evenly spaced: the first and last 256
// tokens of each.
static uint64_t sample_hash(const Dataset *ds, const DataSplit *s) {
    uint64_t h = FNV_OFFSET;
    const long n = s->n_docs, picks = n < 64 ? n : 64;
    for (long i = 0; i < picks; i++) {
        const DataDoc *doc = &s->docs[picks > 1 ? i * (n - 1) / (picks - 1) : 0];
        size_t len = doc->len < 256 ? doc->len : 256, bytes = len * (size_t)ds->token_bytes;
        h = fnv1a(h, &doc->len, sizeof doc->len);
        h = fnv1a(h, doc->data, bytes);
        h = fnv1a(h, (const char *)doc->data + (doc->len - len) * (size_t)ds->token_bytes, bytes);
    }
    return h;
}

int dist_agree_data(const Dist *d, const Dataset *ds, char *err, size_t errlen) {
    if (d->world <= 1) return 0;
    char text[2048];
    int n = snprintf(text, sizeof text, "format=%s\n", data_kind_name(ds->kind));
    for (int s = 0; s < N_SPLITS; s++) {
        const DataSplit *sp = &ds->split[s];
        n += snprintf(text + n, sizeof text - (size_t)n, "%s_documents=%ld\n%s_tokens=%zu\n%s_content=%016llx\n",
                      split_name((Split)s), sp->n_docs, split_name((Split)s), sp->n_tokens, split_name((Split)s),
                      (unsigned long long)sample_hash(ds, sp));
    }
    char hint[1200];
    snprintf(hint, sizeof hint, "data '%s' must be the same file on every rank's machine", ds->path);
    return agree_lines(d, text, "data", hint, err, errlen);
}
