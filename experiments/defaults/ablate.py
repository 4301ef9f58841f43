#!/usr/bin/env python3
"""A copy of a checkpoint with part of the model switched off, to ask what a
trained model uses (then `reformer eval` it):

    /usr/bin/python3 experiments/defaults/ablate.py CKPT OUT.h5 attn|pos|layerN

attn: every layer's attention output projection zeroed; pos: the axial
position tables zeroed; layerN: layer N's attention output zeroed. The copy
is written by h5py, without the seal (it loads, checked field by field).
"""
import sys

import h5py
import numpy as np

src, dst, what = sys.argv[1:4]


def off(name):
    if not name.startswith("params/"):
        return False
    if what == "attn":
        return name.endswith("attn/w_o")
    if what == "pos":
        return name.startswith("params/axial")
    return what.startswith("layer") and name == f"params/layers/{what[5:]}/attn/w_o"


with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    for key, value in f.attrs.items():
        g.attrs[key] = value
    def copy(name, obj):  # returns None: visititems stops at a non-None value
        if isinstance(obj, h5py.Dataset):
            g.create_dataset(name, data=np.zeros_like(obj[()]) if off(name) else obj[()])

    f.visititems(copy)
