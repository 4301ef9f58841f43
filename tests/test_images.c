// Image data (io/data_image.c, io/image_png.c) and image completion
// (decode_continue, core/decode.c): .npz batches written by numpy, PNG files
// written here and by an independent encoder (Python's zlib), the fit rules,
// bad files, and the completion's first prediction against the training
// forward.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
#include "decode.h"
#include "image_png.h"
#include "model.h"

#define TMP_DIR_NAME "reformer-test-images"
#include "tmp_dir.h"

#define ERRLEN 2048

TestSuite(images, .init = make_tmp_dir, .fini = remove_tmp_dir, .timeout = 120);

// Debian's python3 (where python3-numpy installs), else the one on PATH.
static const char *python(void) { return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3"; }

// Run a Python script (with numpy) in tmp_dir; skip the test without numpy.
static void run_python(const char *script) {
    char check[256];
    snprintf(check, sizeof check, "%s -c 'import numpy' 2>/dev/null", python());
    if (system(check) != 0)
        cr_skip_test("numpy not installed (Debian package python3-numpy, installed by make setup): skipped, not passed");
    const char *path = tmp_path(3, "script.py");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(script, f);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s script.py", tmp_dir, python());
    cr_assert_eq(system(cmd), 0, "python failed: %s", script);
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*n ? *n : 1);
    cr_assert_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static Config image_config(const char *data, const char *shape, int seq_len) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN], len[32];
    snprintf(len, sizeof len, "%d", seq_len);
    const char *sets[][2] = {{"data", data}, {"image_shape", shape}, {"seq_len", len}, {"lsh_chunk", "0"},
                             {"local_chunk", "0"}};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        cr_assert_eq(config_set(&c, sets[i][0], sets[i][1], err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    return c;
}

static void open_ok(Dataset *ds, const Config *c) {
    char err[ERRLEN];
    cr_assert_eq(dataset_open(ds, c, err, sizeof err), 0, "%s", err);
}

// dataset_open fails with one line naming every string given.
static void open_fails(const Config *c, ...) {
    Dataset ds;
    char err[ERRLEN];
    cr_assert_eq(dataset_open(&ds, c, err, sizeof err), -1, "opened %s, expected a failure", c->data);
    cr_assert_null(strchr(err, '\n'), "not one line: %s", err);
    va_list ap;
    va_start(ap, c);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_assert_not_null(strstr(err, s), "error does not name '%s': %s", s, err);
    va_end(ap);
}

// Window w of a split: targets are the image in raster order, tokens the
// image shifted right behind a 0.
static void expect_window_is(const Dataset *ds, Split s, long w, const uint8_t *raster, int L) {
    int tok[4096], tgt[4096];
    dataset_eval_window(ds, s, w, tok, tgt);
    cr_assert_eq(tok[0], 0);
    for (int i = 0; i < L; i++) {
        cr_assert_eq(tgt[i], raster[i], "%s window %ld: subpixel %d is %d, expected %d", split_name(s), w, i, tgt[i],
                     raster[i]);
        if (i + 1 < L) cr_assert_eq(tok[i + 1], raster[i]);
    }
}

// numpy writes channel-planar rows (as the downsampled-ImageNet files hold
// them) and, independently, the raster order (row, column, channel) of the
// same images by reshape/transpose; the reader must give the latter, pixel by
// pixel. H != W, so a swapped row/column shows.
#define NPZ_SCRIPT_HEAD                                                                    \
    "import numpy as np, os\n"                                                             \
    "H, W, C = 3, 5, 3\n"                                                                  \
    "rng = np.random.default_rng(7)\n"                                                     \
    "def batch(n):\n"                                                                      \
    "    planar = rng.integers(0, 256, size=(n, C * H * W), dtype=np.uint8)\n"           \
    "    raster = planar.reshape(n, C, H, W).transpose(0, 2, 3, 1).reshape(n, -1)\n"      \
    "    return planar, np.ascontiguousarray(raster)\n"

Test(images, npz_planar_rows_become_raster_order_pixel_by_pixel) {
    run_python(NPZ_SCRIPT_HEAD
               "p, r = batch(10)\n"
               "np.savez('one.npz', data=p, labels=np.arange(10, dtype=np.int64))\n"
               "r.tofile('one.raster')\n");
    Config c = image_config(tmp_path(0, "one.npz"), "3,5,3", 45);
    char err[ERRLEN];
    cr_assert_eq(config_set(&c, "split_fractions", "0.6,0.2,0.2", err, sizeof err), 0);
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_NPZ, "data_format=auto picks npz for a .npz file");
    size_t n;
    uint8_t *raster = read_file(tmp_path(1, "one.raster"), &n);
    cr_assert_eq(n, 10 * 45);
    // Split by image: 6 train, 2 validation, 2 test, in file order.
    const long want[N_SPLITS] = {6, 2, 2};
    long first = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        cr_assert_eq(dataset_eval_windows(&ds, (Split)s), want[s], "%s", split_name((Split)s));
        for (long w = 0; w < want[s]; w++) expect_window_is(&ds, (Split)s, w, raster + (first + w) * 45, 45);
        first += want[s];
    }
    // Training windows are whole images of the train split, every one drawn.
    int tok[2 * 45], tgt[2 * 45], seen[6] = {0};
    for (uint32_t step = 1; step <= 40; step++) {
        dataset_batch(&ds, step, 0, 2, tok, tgt);
        for (int b = 0; b < 2; b++) {
            int found = -1;
            for (int i = 0; i < 6 && found < 0; i++) {
                int same = tok[b * 45] == 0;
                for (int j = 0; j < 45; j++) same &= tgt[b * 45 + j] == raster[i * 45 + j];
                if (same) found = i;
            }
            cr_assert_geq(found, 0, "step %u: a training window is not a train image", step);
            seen[found]++;
        }
    }
    for (int i = 0; i < 6; i++) cr_assert_gt(seen[i], 0, "train image %d never drawn in 80 draws", i);
    free(raster);
    dataset_close(&ds);
}

// A directory in Imagenet64's layout: train_data_batch_*.npz (in natural
// order: 2 before 10), val_data.npz the validation split; compressed files.
Test(images, npz_directory_keeps_its_own_split_in_natural_order) {
    run_python(NPZ_SCRIPT_HEAD
               "os.mkdir('in64')\n"
               "for name, n in [('train_data_batch_10', 3), ('train_data_batch_2', 2), ('val_data', 4)]:\n"
               "    p, r = batch(n)\n"
               "    np.savez_compressed('in64/' + name + '.npz', data=p, labels=np.ones(n, dtype=np.int64))\n"
               "    r.tofile('in64/' + name + '.raster')\n");
    Config c = image_config(tmp_path(0, "in64"), "3,5,3", 45);
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_NPZ);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TRAIN), 5);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_VALIDATION), 4);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TEST), 0);
    size_t n;
    uint8_t *b2 = read_file(tmp_path(1, "in64/train_data_batch_2.raster"), &n),
            *b10 = read_file(tmp_path(2, "in64/train_data_batch_10.raster"), &n),
            *val = read_file(tmp_path(1, "in64/val_data.raster"), &n);
    for (long w = 0; w < 5; w++) expect_window_is(&ds, SPLIT_TRAIN, w, w < 2 ? b2 + w * 45 : b10 + (w - 2) * 45, 45);
    for (long w = 0; w < 4; w++) expect_window_is(&ds, SPLIT_VALIDATION, w, val + w * 45, 45);
    free(b2), free(b10), free(val);
    dataset_close(&ds);
}

// Corrupt or mis-sized .npz files: one line naming the file.
Test(images, bad_npz_files_fail_with_one_line_naming_them) {
    run_python(NPZ_SCRIPT_HEAD
               "p, r = batch(40)\n"
               "np.savez('wide.npz', data=np.zeros((2, 48), dtype=np.uint8))\n"
               "np.savez('floats.npz', data=np.zeros((2, 45), dtype=np.float32))\n"
               "np.savez('nodata.npz', images=p)\n"
               "np.savez_compressed('good.npz', data=p)\n"
               "b = open('good.npz', 'rb').read()\n"
               "open('cut.npz', 'wb').write(b[:len(b) // 2])\n"
               "d = bytearray(b); d[len(d) // 3] ^= 0xff\n"
               "open('flipped.npz', 'wb').write(bytes(d))\n"
               "open('text.npz', 'w').write('not a zip archive')\n");
    const char *cases[][2] = {{"wide.npz", "48 values per image"}, {"floats.npz", "uint8"},
                              {"nodata.npz", "data.npy"},         {"cut.npz", "cut.npz"},
                              {"flipped.npz", "flipped.npz"},     {"text.npz", "zip"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Config c = image_config(tmp_path(0, "%s", cases[i][0]), "3,5,3", 45);
        open_fails(&c, cases[i][0], cases[i][1], NULL);
    }
}

// An image model reads only images; a text model only text.
Test(images, image_models_and_text_data_refuse_each_other) {
    const char *text = tmp_path(0, "t.txt");
    write_file(text, "some text, long enough for a window of eight bytes or more", 59);
    Config c = image_config(text, "2,2,2", 8);
    open_fails(&c, "t.txt", "image_shape", NULL);
    run_python(NPZ_SCRIPT_HEAD "p, r = batch(3)\nnp.savez('x.npz', data=p)\n");
    Config t;
    config_defaults(&t);
    char err[ERRLEN];
    cr_assert_eq(config_set(&t, "data", tmp_path(1, "x.npz"), err, sizeof err), 0);
    cr_assert_eq(config_finalize(&t, err, sizeof err), 0, "%s", err);
    open_fails(&t, "x.npz", "image_shape", NULL);
}

// ------------------------------------------------------------------- PNG

static void fill(uint8_t *p, size_t n, unsigned salt) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 37u + salt * 101u + (i * i) % 251u) & 0xff);
}

// What libpng writes it reads back byte for byte, for every channel count
// and both the fastest and the smallest compression.
Test(images, png_round_trips_bit_for_bit) {
    for (int C = 1; C <= 4; C++)
        for (int level = 0; level <= 9; level += 9) {
            const int w = 13, h = 7;
            uint8_t pix[13 * 7 * 4];
            fill(pix, (size_t)w * h * C, (unsigned)(C * 10 + level));
            const char *path = tmp_path(0, "rt_%d_%d.png", C, level);
            char err[ERRLEN];
            cr_assert_eq(png_write(path, pix, w, h, C, level, err, sizeof err), 0, "%s", err);
            uint8_t *back;
            int bw, bh;
            cr_assert_eq(png_read(path, C, &back, &bw, &bh, err, sizeof err), 0, "%s", err);
            cr_assert(bw == w && bh == h);
            cr_assert(!memcmp(back, pix, (size_t)w * h * C), "C=%d level %d: pixels differ after a round trip", C,
                      level);
            free(back);
        }
}

// An independent encoder (Python's zlib and struct, no libpng): a 6x4 RGB
// file decodes to its pixels, and a grayscale one read as RGB repeats its value.
Test(images, png_from_another_encoder_decodes_to_its_pixels) {
    run_python("import zlib, struct\n"
               "def png(path, w, h, ct, rows):\n"
               "    raw = b''.join(b'\\x00' + r for r in rows)\n"
               "    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))\n"
               "    open(path, 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, "
               "ct, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))\n"
               "png('rgb.png', 6, 4, 2, [bytes((y * 60 + x * 3 + c) % 256 for x in range(6) for c in range(3)) for y in "
               "range(4)])\n"
               "png('gray.png', 3, 2, 0, [bytes([10 * y + x for x in range(3)]) for y in range(2)])\n");
    uint8_t *pix;
    int w, h;
    char err[ERRLEN];
    cr_assert_eq(png_read(tmp_path(0, "rgb.png"), 3, &pix, &w, &h, err, sizeof err), 0, "%s", err);
    cr_assert(w == 6 && h == 4);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 6; x++)
            for (int c = 0; c < 3; c++) cr_assert_eq(pix[(y * 6 + x) * 3 + c], (y * 60 + x * 3 + c) % 256);
    free(pix);
    cr_assert_eq(png_read(tmp_path(0, "gray.png"), 3, &pix, &w, &h, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++) cr_assert_eq(pix[i * 3 + c], 10 * (i / 3) + i % 3);
    free(pix);
}

// A directory of PNGs: train/ and validation/ are its split; image_fit crop
// takes the centred window, tile every whole tile row by row.
Test(images, png_directory_split_and_fit_rules) {
    const char *root = tmp_path(0, "pngs");
    cr_assert_eq(mkdir(root, 0755), 0);
    cr_assert_eq(mkdir(tmp_path(1, "pngs/train"), 0755), 0);
    cr_assert_eq(mkdir(tmp_path(1, "pngs/validation"), 0755), 0);
    enum { w = 9, h = 7, C = 3, H = 3, W = 4 };
    uint8_t pic[h][w][C], other[h][w][C];
    fill(&pic[0][0][0], sizeof pic, 1);
    fill(&other[0][0][0], sizeof other, 2);
    char err[ERRLEN];
    cr_assert_eq(png_write(tmp_path(1, "pngs/train/a.png"), &pic[0][0][0], w, h, C, 6, err, sizeof err), 0, "%s", err);
    cr_assert_eq(png_write(tmp_path(1, "pngs/validation/b.png"), &other[0][0][0], w, h, C, 6, err, sizeof err), 0);
    Config c = image_config(root, "3,4,3", H * W * C);
    open_fails(&c, "a.png", "9x7", "image_fit", NULL);  // exact: another size is an error
    char v[8];
    snprintf(v, sizeof v, "crop");
    cr_assert_eq(config_set(&c, "image_fit", v, err, sizeof err), 0);
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_PNG);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TRAIN), 1);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_VALIDATION), 1);
    uint8_t want[H * W * C];
    // Crop: x0 = (9 - 4) / 2 = 2, y0 = (7 - 3) / 2 = 2.
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++) want[(y * W + x) * C + k] = pic[2 + y][2 + x][k];
    expect_window_is(&ds, SPLIT_TRAIN, 0, want, H * W * C);
    dataset_close(&ds);
    // Tile: floor(9/4) x floor(7/3) = 2 x 2 tiles; tile 3 is the second of the second row.
    cr_assert_eq(config_set(&c, "image_fit", "tile", err, sizeof err), 0);
    open_ok(&ds, &c);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TRAIN), 4);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < C; k++) want[(y * W + x) * C + k] = pic[3 + y][4 + x][k];
    expect_window_is(&ds, SPLIT_TRAIN, 3, want, H * W * C);
    dataset_close(&ds);
}

// Flat directories split by image; bad PNG files: one line naming them.
Test(images, flat_png_directory_and_bad_pngs) {
    const char *root = tmp_path(0, "flat");
    cr_assert_eq(mkdir(root, 0755), 0);
    uint8_t pix[2 * 2 * 3];
    char err[ERRLEN];
    for (int i = 0; i < 10; i++) {
        fill(pix, sizeof pix, (unsigned)i);
        cr_assert_eq(png_write(tmp_path(1, "flat/img%d.png", i), pix, 2, 2, 3, 6, err, sizeof err), 0);
    }
    Config c = image_config(root, "2,2,3", 12);
    cr_assert_eq(config_set(&c, "split_fractions", "0.8,0.1,0.1", err, sizeof err), 0);
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TRAIN), 8);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_VALIDATION), 1);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TEST), 1);
    fill(pix, sizeof pix, 9);  // natural order: img9 last, before img10 would be
    expect_window_is(&ds, SPLIT_TEST, 0, pix, 12);
    dataset_close(&ds);
    // A non-PNG and a truncated PNG.
    write_file(tmp_path(1, "flat/img3.png"), "GIF89a not a png at all", 23);
    open_fails(&c, "img3.png", "not a PNG", NULL);
    size_t n;
    fill(pix, sizeof pix, 3);
    cr_assert_eq(png_write(tmp_path(1, "flat/img3.png"), pix, 2, 2, 3, 0, err, sizeof err), 0);
    uint8_t *bytes = read_file(tmp_path(1, "flat/img3.png"), &n);
    write_file(tmp_path(1, "flat/img3.png"), bytes, n - 20);
    free(bytes);
    open_fails(&c, "img3.png", "PNG", NULL);
}

// ------------------------------------------------------------- completion

// A tiny image model: 4x4x3 images (48 subpixels), chunks of 12, init_std 0.3
// so that attention and position matter.
static Config completion_config(const char *pattern, int strict) {
    Config c;
    config_defaults(&c);
    const char *sets[] = {"image_shape=4,4,3", "seq_len=48", "d_model=24", "d_ff=40", "n_heads=3", "d_head=8",
                          "n_layers=3", "lsh_chunk=12", "local_chunk=12", "n_buckets=4", "init_std=0.3", "batch=1",
                          "seed=5", NULL};
    char err[ERRLEN];
    for (int i = 0; sets[i]; i++) cr_assert_eq(config_set_pair(&c, sets[i], err, sizeof err), 0, "%s", err);
    snprintf(c.attn_layers, sizeof c.attn_layers, "%s", pattern);
    c.lsh_strict = strict;
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    return c;
}

// The completion keeps the given rows and its first sampled subpixel is drawn
// from the distribution the training forward predicts there: log-probabilities
// of all 256 values equal to 2e-5 nats (test_decode's tolerance: float sums in
// another order; losses ~5.5 nats).
static double completion_vs_training(Config c, int keep_rows) {
    ParamLayout layout;
    param_layout_build(&layout, &c);
    real *params = calloc(layout.n_params, sizeof(real));
    param_init_host(&layout, params, c.seed);
    const int L = c.seq_len, V = c.vocab_size, row = 4 * 3, n_given = 1 + keep_rows * row;
    uint8_t img[48];
    fill(img, sizeof img, 4);
    int stream[49], tok[48], tgt[48];
    stream[0] = 0;
    for (int i = 0; i < L; i++) stream[1 + i] = img[i];
    Decoder dec;
    decoder_init(&dec, &c, &layout, params);
    real logits[256], first[256];
    cr_assert_eq(decode_continue(&dec, stream, n_given, L + 1, 3, 0, 1.0, 0, logits, first), 0);
    for (int i = 0; i + 1 < n_given; i++) cr_assert_eq(stream[1 + i], img[i], "given subpixel %d changed", i);
    int changed = 0;
    for (int i = n_given - 1; i < L; i++) changed += stream[1 + i] != img[i];
    cr_assert_gt(changed, 0, "the sampled rows equal the original: nothing was sampled");
    // The training forward on the original image: its loss at position
    // n_given - 1 for every value v is -log p(v).
    Model m;
    model_init(&m, &c, backend_cpu());
    model_set_params(&m, params);
    image_window(img, L, tok, tgt);
    const int p = n_given - 1;
    double mx = -INFINITY, z = 0, worst = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, first[v]);
    for (int v = 0; v < V; v++) z += exp(first[v] - mx);
    for (int v = 0; v < V; v++) {
        for (int i = 0; i < L; i++) tgt[i] = i == p ? v : -1;
        model_forward(&m, tok, tgt, INFERENCE_HASH_STEP, 0);
        double decode_nll = mx + log(z) - first[v];
        worst = fmax(worst, fabs(decode_nll - m.losses[p]));
    }
    model_free(&m);
    decoder_free(&dec);
    free(params);
    param_layout_free(&layout);
    return worst;
}

Test(images, completion_first_subpixel_matches_training_forward_local) {
    double worst = completion_vs_training(completion_config("local", 0), 2);
    cr_assert_lt(worst, 2e-5, "local: worst |log p| difference %g", worst);
}

Test(images, completion_first_subpixel_matches_training_forward_strict_lsh) {
    double worst = completion_vs_training(completion_config("local,lsh", 1), 2);
    cr_assert_lt(worst, 2e-5, "lsh_form=strict: worst |log p| difference %g", worst);
    worst = completion_vs_training(completion_config("lsh", 1), 3);
    cr_assert_lt(worst, 2e-5, "lsh_form=strict, all LSH: worst |log p| difference %g", worst);
}
