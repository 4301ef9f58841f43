#include "image_png.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, const char *path, const char *why) {
    snprintf(err, errlen, fmt, path, why);
    return -1;
}

static png_uint_32 format_of(int C) {
    static const png_uint_32 formats[5] = {0, PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
    return formats[C];
}

int png_read(const char *path, int C, uint8_t **pixels, int *w, int *h, char *err, size_t errlen) {
    *pixels = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errlen, "data: cannot open '%s': %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, f);
    fclose(f);
    if (got < sizeof sig || png_sig_cmp(sig, 0, sizeof sig))
        return fail(err, errlen, "data: '%s' is not a PNG file (%s)", path, "no PNG signature");
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) {
        fail(err, errlen, "data: '%s' is a damaged PNG file: %s", path, img.message);
        png_image_free(&img);
        return -1;
    }
    img.format = format_of(C);
    size_t bytes = PNG_IMAGE_SIZE(img);
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf) {
        png_image_free(&img);
        return fail(err, errlen, "data: no memory to decode '%s'%s", path, "");
    }
    // Background for alpha removal when C has no alpha: black, stated.
    png_color background = {0, 0, 0};
    if (!png_image_finish_read(&img, &background, buf, 0, NULL)) {
        fail(err, errlen, "data: '%s' is a truncated or damaged PNG file: %s", path, img.message);
        free(buf);
        png_image_free(&img);
        return -1;
    }
    *w = (int)img.width;
    *h = (int)img.height;
    *pixels = buf;
    return 0;
}

int png_write(const char *path, const uint8_t *pixels, int w, int h, int C, int level, char *err, size_t errlen) {
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                       PNG_COLOR_TYPE_RGBA};
    FILE *f = fopen(path, "wb");
    if (!f) return fail(err, errlen, "cannot write '%s': %s", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return fail(err, errlen, "cannot write '%s': %s", path, "libpng could not start");
    }
    if (setjmp(png_jmpbuf(png))) {  // libpng's errors (a full disk) land here
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return fail(err, errlen, "cannot write '%s': %s", path, "libpng failed (disk full?)");
    }
    png_init_io(png, f);
    png_set_compression_level(png, level);
    if (level == 9) png_set_filter(png, 0, PNG_ALL_FILTERS);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, color_types[C], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, pixels + (size_t)y * w * C);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) return fail(err, errlen, "cannot write '%s': %s", path, strerror(errno));
    return 0;
}

long image_fit_count(ImageFit fit, int w, int h, int W, int H, const char *path, char *err, size_t errlen) {
    if (fit == IMAGE_FIT_EXACT && (w != W || h != H)) {
        snprintf(err, errlen,
                 "data: '%s' is %dx%d pixels, not image_shape's %dx%d; resize it, or set image_fit=crop (centre "
                 "crop) or image_fit=tile",
                 path, w, h, W, H);
        return -1;
    }
    if (w < W || h < H) {
        snprintf(err, errlen, "data: '%s' is %dx%d pixels, smaller than image_shape's %dx%d (image_fit=%s)", path, w, h,
                 W, H, fit == IMAGE_FIT_CROP ? "crop" : "tile");
        return -1;
    }
    return fit == IMAGE_FIT_TILE ? (long)(w / W) * (h / H) : 1;
}

void image_fit_take(ImageFit fit, const uint8_t *pixels, int w, int h, int C, int W, int H, long i, uint8_t *out) {
    int x0 = (w - W) / 2, y0 = (h - H) / 2;
    if (fit == IMAGE_FIT_TILE) x0 = (int)(i % (w / W)) * W, y0 = (int)(i / (w / W)) * H;
    for (int y = 0; y < H; y++)
        memcpy(out + (size_t)y * W * C, pixels + ((size_t)(y0 + y) * w + x0) * C, (size_t)W * C);
}
