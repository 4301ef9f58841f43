#!/usr/bin/env python3
"""A stated synthetic image set (numpy only), for tests and quick runs.

    synthetic.py OUT_DIR SIZE [N]

N (default 200) RGB images of SIZE x SIZE, image i drawn from
numpy.random.default_rng(i): a linear colour gradient (two random corner
colours, random direction) with one axis-aligned rectangle of a third
random colour, plus uniform noise of +-8 on every subpixel, clipped to 0..255.
Written as OUT_DIR/train/ (the first 80%), validation/ (10%) and test/ (10%)
<i>.png by a minimal PNG encoder (zlib, filter 0), so that no imaging library
is needed. Such images have long smooth runs a model can learn quickly, and
PNG compresses them only moderately because of the noise.
"""
import os
import struct
import sys
import zlib

import numpy as np


def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def image(i, size):
    rng = np.random.default_rng(i)
    a, b, c = (rng.integers(0, 256, 3) for _ in range(3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    y0, x0 = rng.integers(0, size // 2, 2)
    y1, x1 = y0 + rng.integers(size // 4, size // 2 + 1), x0 + rng.integers(size // 4, size // 2 + 1)
    img[y0:y1, x0:x1] = c
    img += rng.integers(-8, 9, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    out, size = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) == 4 else 200
    for split in ("train", "validation", "test"):
        os.makedirs(os.path.join(out, split), exist_ok=True)
    for i in range(n):
        split = "train" if i < 0.8 * n else "validation" if i < 0.9 * n else "test"
        write_png(os.path.join(out, split, f"{i:05d}.png"), image(i, size))
    print(f"{n} synthetic {size}x{size} images in {out}")


if __name__ == "__main__":
    main()
