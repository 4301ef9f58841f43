// End-to-end tests of images in the `reformer` program: bits per dimension
// in eval and training, `sample --image` completion to PNG, and bad input
// (one line, exit 2). A directory of 4x4 RGB PNGs written here is the data.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include "cli_run.h"
#include "image_png.h"

TestSuite(images_cli, .init = setup, .fini = teardown, .timeout = 120);

#define IMAGE_MODEL                                                                                              \
    "--set image_shape=4,4,3 --set seq_len=48 --set d_model=24 --set d_ff=48 --set n_heads=2 --set n_layers=2 " \
    "--set lsh_chunk=12 --set local_chunk=12 --set batch=2 --set eval_every=0"

static void pixels_of(uint8_t *p, size_t n, unsigned salt) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 29u + salt * 71u + (i * i) % 13u) & 0xff);
}

// tmp_dir/imgs: ten 4x4 RGB images; tmp_dir/in.png one more.
static void write_images(void) {
    char path[512], err[1024];
    path_in(path, sizeof path, "imgs");
    cr_assert_eq(mkdir(path, 0755), 0);
    uint8_t pix[48];
    for (int i = 0; i < 10; i++) {
        pixels_of(pix, sizeof pix, (unsigned)i);
        snprintf(path, sizeof path, "%s/imgs/%02d.png", tmp_dir, i);
        cr_assert_eq(png_write(path, pix, 4, 4, 3, 6, err, sizeof err), 0, "%s", err);
    }
    pixels_of(pix, sizeof pix, 99);
    path_in(path, sizeof path, "in.png");
    cr_assert_eq(png_write(path, pix, 4, 4, 3, 6, err, sizeof err), 0, "%s", err);
}

// "<name> X" in text: X.
static double field(const char *text, const char *name) {
    const char *p = strstr(text, name);
    cr_assert_not_null(p, "no '%s' in: %s", name, text);
    return atof(p + strlen(name));
}

// A model that predicts every value equally (init_std 0: the output layer is
// zero, so the logits are 0) scores ln 256 = 5.5452 nats per subpixel:
// exactly 8 bits per dim. A trained one: bits per dim = mean loss / ln 2.
Test(images_cli, bits_per_dim_is_mean_loss_over_ln2) {
    write_images();
    train_ok("train --set data='%s/imgs' " IMAGE_MODEL " --set steps=0 --set init_std=0 --set out_dir='%s/zero'",
             tmp_dir, tmp_dir);
    Run r = run_cli("eval --ckpt '%s/zero/ckpt_00000000.h5' --split train", tmp_dir);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "loss 5.5452 nats | 8.0000 bits per dim"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "9 of 9 windows | 432 targets"), "every subpixel of 9 images: %s", r.out);
    run_free(&r);
    r = run_cli("train --set data='%s/imgs' " IMAGE_MODEL " --set steps=6 --set lr=0.01 --set warmup=1 "
                "--set eval_every=6 --set split_fractions=0.7,0.3,0 --set out_dir='%s/run'",
                tmp_dir, tmp_dir);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "| bpd "), "training lines name bits per dim: %s", r.out);
    cr_assert_null(strstr(r.out, "bpb"), "an image run says bpb: %s", r.out);
    // The eval line of training: "| X bpd | loss Y |" with X = Y / ln 2 (to
    // the printed 4 decimals: 5e-5 + 5e-5 / ln 2 = 1.3e-4).
    const char *ev = strstr(r.out, "eval: step 6/6");
    cr_assert_not_null(ev, "%s", r.out);
    double bpd = field(ev, "| validation | "), loss = field(ev, "bpd | loss ");
    cr_assert_lt(fabs(bpd - loss / M_LN2), 1.3e-4, "%g bpd vs loss %g / ln 2", bpd, loss);
    cr_assert_gt(fabs(bpd - 8), 0.01, "a trained model, not the uniform 8 bits (%g bpd)", bpd);
    run_free(&r);
    r = run_cli("eval --ckpt '%s/run/ckpt_00000006.h5'", tmp_dir);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    loss = field(r.out, "| loss ");
    bpd = field(r.out, "nats | ");
    cr_assert_not_null(strstr(r.out, "bits per dim"), "%s", r.out);
    cr_assert_lt(fabs(bpd - loss / M_LN2), 1.3e-4, "%g bits per dim vs loss %g / ln 2", bpd, loss);
    run_free(&r);
}

// sample --image: OUT.png is the original and N completions side by side,
// each keeping the top K rows bit for bit; the same seed gives the same file.
Test(images_cli, completion_keeps_the_top_rows_bit_for_bit) {
    write_images();
    train_ok("train --set data='%s/imgs' " IMAGE_MODEL " --set steps=2 --set init_std=0.3 --set out_dir='%s/run'",
             tmp_dir, tmp_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        Run r = run_cli("sample --ckpt '%s/run/ckpt_00000002.h5' --image '%s/in.png' --keep-rows 2 --n 3 "
                        "--out '%s/out%d.png' --seed 4",
                        tmp_dir, tmp_dir, tmp_dir, attempt);
        cr_assert_eq(r.rc, 0, "%s", r.err);
        cr_assert_not_null(strstr(r.err, "3 completions"), "%s", r.err);
        run_free(&r);
    }
    char path[512], err[1024];
    uint8_t in[48], *out, *again;
    pixels_of(in, sizeof in, 99);
    int w, h;
    path_in(path, sizeof path, "out0.png");
    cr_assert_eq(png_read(path, 3, &out, &w, &h, err, sizeof err), 0, "%s", err);
    cr_assert(w == 16 && h == 4, "%dx%d, expected 4 panels of 4x4", w, h);
    int sampled_differ = 0;
    for (int panel = 0; panel < 4; panel++)
        for (int y = 0; y < 4; y++)
            for (int i = 0; i < 12; i++) {
                uint8_t got = out[(y * 16 + panel * 4) * 3 + i], want = in[y * 12 + i];
                if (panel == 0 || y < 2)
                    cr_assert_eq(got, want, "panel %d row %d subpixel %d: %d, the original has %d", panel, y, i, got,
                                 want);
                else sampled_differ += got != want;
            }
    cr_assert_gt(sampled_differ, 0, "the sampled rows are the original's");
    path_in(path, sizeof path, "out1.png");
    cr_assert_eq(png_read(path, 3, &again, &w, &h, err, sizeof err), 0, "%s", err);
    cr_assert(!memcmp(out, again, 16 * 4 * 3), "the same seed gave another completion");
    free(out);
    free(again);
}

// Bad input: one line, exit 2.
Test(images_cli, bad_input_fails_with_one_line_and_exit_2) {
    write_images();
    train_ok("train --set data='%s/imgs' " IMAGE_MODEL " --set steps=1 --set out_dir='%s/img'", tmp_dir, tmp_dir);
    train_ok("train " TINY_TRAIN " --set steps=1 --set out_dir='%s/txt'", tmp_dir);
    char path[512], err[1024];
    path_in(path, sizeof path, "not.png");
    FILE *f = fopen(path, "w");
    fputs("GIF89a, not a PNG", f);
    fclose(f);
    uint8_t pix[5 * 4 * 3];
    pixels_of(pix, sizeof pix, 3);
    path_in(path, sizeof path, "wide.png");
    cr_assert_eq(png_write(path, pix, 5, 4, 3, 0, err, sizeof err), 0);
    sh("head -c 60 '%s/in.png' > '%s/cut.png'", tmp_dir, tmp_dir);
    static const struct {
        const char *args, *names[4];  // NULL-terminated
    } cases[] = {
        {"sample --ckpt '%1$s/img/ckpt_00000001.h5' --image '%1$s/not.png' --keep-rows 2 --out '%1$s/o.png'",
         {"not.png", "not a PNG"}},
        {"sample --ckpt '%1$s/img/ckpt_00000001.h5' --image '%1$s/cut.png' --keep-rows 2 --out '%1$s/o.png'",
         {"cut.png", "PNG"}},
        {"sample --ckpt '%1$s/img/ckpt_00000001.h5' --image '%1$s/wide.png' --keep-rows 2 --out '%1$s/o.png'",
         {"wide.png", "5x4", "image_fit"}},
        {"sample --ckpt '%1$s/img/ckpt_00000001.h5' --image '%1$s/in.png' --keep-rows 4 --out '%1$s/o.png'",
         {"--keep-rows", "4"}},
        {"sample --ckpt '%1$s/img/ckpt_00000001.h5' --image '%1$s/in.png' --keep-rows 1", {"--out"}},
        {"sample --ckpt '%1$s/img/ckpt_00000001.h5' --prompt hello --len 4", {"image model", "--image"}},
        {"sample --ckpt '%1$s/txt/ckpt_00000001.h5' --image '%1$s/in.png' --keep-rows 1 --out '%1$s/o.png'",
         {"text model", "--image"}},
        {"eval --ckpt '%1$s/img/ckpt_00000001.h5' --data data/tinyshakespeare.txt", {"tinyshakespeare", "image_shape"}},
        {"eval --ckpt '%1$s/txt/ckpt_00000001.h5' --data '%1$s/imgs'", {"imgs", "image_shape"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[2048], what[2100];
        snprintf(args, sizeof args, cases[i].args, tmp_dir);
        Run r = run_cli("%s", args);
        snprintf(what, sizeof what, "reformer %s", args);
        cr_assert_eq(r.rc, 2, "%s: exit %d, expected 2 (stderr: %s)", what, r.rc, r.err);
        assert_one_line_error(&r, what, (const char *const[]){cases[i].names[0], cases[i].names[1], cases[i].names[2]});
        run_free(&r);
    }
    path_in(path, sizeof path, "o.png");
    cr_assert(!exists(path), "a failed completion wrote %s", path);
}

// plan --fit varies seq_len, which image_shape fixes: the search still runs
// (its probes are text-shaped; the axial tables are tiny) and finds a length.
Test(images_cli, plan_fit_works_for_an_image_model) {
    Run r = run_cli("plan --set device=cuda --set image_shape=64,64,3 --set seq_len=12288 --set batch=8 "
                    "--set d_model=256 --set n_layers=2 --set lsh_chunk=128 --fit 2G");
    cr_assert_eq(r.rc, 0, "%s%s", r.out, r.err);
    cr_assert_not_null(strstr(r.out, "fit: longest seq_len"), "%s", r.out);
    run_free(&r);
}
