// PNG files for image data and completions (libpng's simplified API for
// reading, its full API for writing at a chosen compression level).
//
// Pixels are 8-bit, raster order (row, column, channel), C channels: 1 gray,
// 2 gray+alpha, 3 RGB, 4 RGBA. A file of another colour type is converted to
// C channels by libpng (a grayscale file read as RGB repeats its value).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"

// Read path into *pixels (malloc'd, [*h, *w, C]). Returns 0, or -1 with one
// line in err naming the file: missing, not a PNG, truncated or damaged.
int png_read(const char *path, int C, uint8_t **pixels, int *w, int *h, char *err, size_t errlen);

// Write pixels [h, w, C] to path at zlib level 0..9 (9: the smallest file
// libpng makes, all row filters tried). Returns 0 or -1 with one line.
int png_write(const char *path, const uint8_t *pixels, int w, int h, int C, int level, char *err, size_t errlen);

// How many H x W images a w x h picture gives under image_fit (exact and crop:
// 1, tile: every whole tile), or -1 with one line in err naming path and the
// rule when it gives none (exact: another size; crop, tile: too small).
long image_fit_count(ImageFit fit, int w, int h, int W, int H, const char *path, char *err, size_t errlen);

// Image i (< image_fit_count) of the picture pixels [h, w, C] into out [H, W, C]:
// exact copies, crop takes the window at ((w - W) / 2, (h - H) / 2) (rounded
// down), tile takes tile i in row-major order from the top left.
void image_fit_take(ImageFit fit, const uint8_t *pixels, int w, int h, int C, int W, int H, long i, uint8_t *out);
