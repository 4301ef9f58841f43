// Pre-tokenized data in llm.c's .bin format: a header of 256 little-endian
// int32 (magic 20240520, version 1, token count, the rest unused), then the
// tokens as uint16. Memory-mapped and validated whole before use, then cut
// into the splits by `split_fractions`.
#include <stdint.h>
#include <string.h>

#include "data_source.h"

int data_open_tokens(Dataset *ds, const Config *c, char *err, size_t errlen) {
    const char *path = ds->path;
    const void *map;
    size_t size;
    if (data_map_file(ds, "data", path, &map, &size, err, errlen)) return -1;
    const size_t header_bytes = LLMC_HEADER_INTS * sizeof(int32_t);
    if (size < header_bytes)
        return data_fail(err, errlen, "data: '%s' has %zu bytes, fewer than the %zu of a token file header", path, size,
                         header_bytes);
    int32_t header[3];
    memcpy(header, map, sizeof header);
    if (header[0] != LLMC_TOKENS_MAGIC)
        return data_fail(err, errlen, "data: '%s': token header magic is %d, expected %d (llm.c's .bin format)", path,
                         header[0], LLMC_TOKENS_MAGIC);
    if (header[1] != LLMC_TOKENS_VERSION)
        return data_fail(err, errlen, "data: '%s': token file version %d is not supported (expected %d)", path,
                         header[1], LLMC_TOKENS_VERSION);
    if (header[2] <= 0)
        return data_fail(err, errlen, "data: '%s': token header says %d tokens", path, header[2]);
    size_t count = (size_t)header[2];
    if (size != header_bytes + 2 * count)
        return data_fail(err, errlen, "data: '%s' has %zu bytes, but its header says %zu tokens (%zu bytes)", path, size,
                         count, header_bytes + 2 * count);
    const uint16_t *tokens = (const uint16_t *)((const char *)map + header_bytes);
    for (size_t i = 0; i < count; i++)
        if (tokens[i] >= c->vocab_size)
            return data_fail(err, errlen, "data: '%s': token %u at index %zu is not below vocab_size=%d", path,
                             tokens[i], i, c->vocab_size);
    data_split_contiguous(ds, tokens, count, c->split_fractions);
    return 0;
}
