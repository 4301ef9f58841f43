#!/usr/bin/env python3
"""Cut scikit-image's photographs into square patches, split by source image.

    patches.py DATA_DIR OUT_DIR SIZE

DATA_DIR is the skimage/data folder of the scikit-image wheel (prepare.sh
installs it into a venv; nothing is imported from it). Every colour
photograph in PHOTOS is cut into non-overlapping SIZE x SIZE RGB patches,
row by row from the top left (the remainder at the right and bottom edges is
dropped), written as OUT_DIR/<split>/<photo>_<row>_<col>.png: a directory of
PNG files with its own split, which `reformer` reads with data_format=png.
A photograph and all its patches are in one split, so no held-out patch
shares a picture with a training patch (motorcycle_left and _right, one
stereo pair of the same scene, are both in train).
"""
import os
import sys

from PIL import Image

# The split of each source photograph (colour photographs only; the wheel's
# grayscale and synthetic images are left out).
PHOTOS = {
    "astronaut.png": "train",
    "hubble_deep_field.jpg": "train",
    "ihc.png": "train",
    "motorcycle_left.png": "train",
    "motorcycle_right.png": "train",
    "retina.jpg": "train",
    "rocket.jpg": "validation",
    "chelsea.png": "test",
    "coffee.png": "test",
}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    data_dir, out_dir, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    counts = {"train": 0, "validation": 0, "test": 0}
    for split in counts:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    for name, split in sorted(PHOTOS.items()):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            sys.exit(f"patches.py: {path} is missing: not the scikit-image wheel's skimage/data?")
        img = Image.open(path).convert("RGB")
        w, h = img.size
        stem = os.path.splitext(name)[0]
        n = 0
        for y in range(0, h - size + 1, size):
            for x in range(0, w - size + 1, size):
                patch = img.crop((x, y, x + size, y + size))
                patch.save(os.path.join(out_dir, split, f"{stem}_{y // size:03d}_{x // size:03d}.png"))
                n += 1
        counts[split] += n
        print(f"{name}: {w}x{h} -> {n} patches of {size}x{size} ({split})")
    print(" | ".join(f"{s} {c}" for s, c in counts.items()))


if __name__ == "__main__":
    main()
