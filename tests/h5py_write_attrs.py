#!/usr/bin/env python3
"""Rewrite a checkpoint's config attributes the way h5py users write strings
(tests/test_checkpoint.c, issue 11 case 13).

    h5py_write_attrs.py FILE

Every string attribute is rewritten in turn as: a Python str (h5py's default,
a variable-length UTF-8 string), a numpy bytes_ (fixed-length ASCII), and an
h5py variable-length ASCII string, cycling over the keys; the value is kept.
FILE must be unsealed (a plain HDF5 file). Exits 0, 1 with a message, or 77
when h5py is not installed.
"""
import sys

try:
    import h5py
    import numpy as np
except ImportError:
    print("h5py_write_attrs: h5py is not installed", file=sys.stderr)
    sys.exit(77)

if len(sys.argv) != 2:
    print(__doc__, file=sys.stderr)
    sys.exit(1)
with h5py.File(sys.argv[1], "r+") as f:
    names = [k for k, v in f.attrs.items() if isinstance(v, (bytes, str))]
    if not names:
        print("h5py_write_attrs: no string attributes", file=sys.stderr)
        sys.exit(1)
    for i, name in enumerate(sorted(names)):
        value = f.attrs[name]
        text = value.decode() if isinstance(value, bytes) else value
        del f.attrs[name]
        if i % 3 == 0:
            f.attrs[name] = text
        elif i % 3 == 1:
            f.attrs[name] = np.bytes_(text.encode())
        else:
            f.attrs.create(name, text, dtype=h5py.string_dtype("ascii"))
    kinds = {h5py.check_string_dtype(f.attrs.get_id(n).dtype).length is None for n in names}
    print(f"h5py_write_attrs: {len(names)} attributes rewritten, variable-length: {sorted(kinds)}")
