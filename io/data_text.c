// Any file as byte-level text: one byte per token, cut into train,
// validation and test by `split_fractions`.
#include "data_source.h"

int data_open_text(Dataset *ds, const Config *c, char *err, size_t errlen) {
    if (data_require_byte_vocab(ds, err, errlen)) return -1;
    const void *bytes;
    size_t n;
    if (data_map_file(ds, "data", ds->path, &bytes, &n, err, errlen)) return -1;
    data_split_contiguous(ds, bytes, n, c->split_fractions);
    return 0;
}
