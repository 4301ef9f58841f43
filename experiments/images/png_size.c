// PNG's own lossless size of a set of images (issue 24's baseline): every
// PNG file named on the command line (or every *.png of a directory) is
// decoded and re-encoded by libpng at maximum compression (zlib level 9, all
// row filters tried: io/image_png.c png_write), and its size is reported in
// bits per subpixel, whole files and the compressed image data alone (the
// IDAT chunks: without the fixed ~57 bytes of signature, header and end
// chunks, which weigh on 32x32 patches).
//
//   build/png_size DIR_OR_FILE...
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image_png.h"

static long long file_bytes, idat_bytes, subpixels, files;

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void measure(const char *path) {
    uint8_t *pix;
    int w, h;
    char err[2048];
    if (png_read(path, 3, &pix, &w, &h, err, sizeof err)) {
        fprintf(stderr, "png_size: %s\n", err);
        exit(2);
    }
    const char *tmp = "/tmp/png_size.tmp.png";
    if (png_write(tmp, pix, w, h, 3, 9, err, sizeof err)) {
        fprintf(stderr, "png_size: %s\n", err);
        exit(1);
    }
    free(pix);
    FILE *f = fopen(tmp, "rb");
    if (!f) exit(1);
    static uint8_t buf[1 << 24];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    remove(tmp);
    file_bytes += (long long)n;
    for (size_t at = 8; at + 12 <= n;) {  // chunks: length, type, data, CRC
        uint32_t len = be32(buf + at);
        if (!memcmp(buf + at + 4, "IDAT", 4)) idat_bytes += len;
        at += 12 + (size_t)len;
    }
    subpixels += (long long)w * h * 3;
    files++;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: png_size DIR_OR_FILE...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "png_size: cannot open %s\n", argv[i]);
            return 2;
        }
        if (!S_ISDIR(st.st_mode)) {
            measure(argv[i]);
            continue;
        }
        DIR *d = opendir(argv[i]);
        char **names = NULL;
        size_t n = 0;
        for (struct dirent *e; d && (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".png")) continue;
            names = realloc(names, (n + 1) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        if (d) closedir(d);
        qsort(names, n, sizeof *names, by_name);
        for (size_t k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]);
            measure(path);
            free(names[k]);
        }
        free(names);
    }
    printf("%lld images, %lld subpixels | PNG level 9: %lld bytes = %.4f bits per subpixel | IDAT only: %lld bytes = "
           "%.4f bits per subpixel\n",
           files, subpixels, file_bytes, 8.0 * file_bytes / subpixels, idat_bytes, 8.0 * idat_bytes / subpixels);
    return 0;
}
