"""Cuts the committed test bank `bank_tiny.h5` out of the shared waveform bank.

Source: ../shared/data/waveforms/bbh_phenomthm.h5 (lalsuite 7.26.16 IMRPhenomTHM
model waveforms; see data/README.md). Keeps the first 4 waveforms, every 10th
time sample, and the (2,2) mode, in the same layout.

    python data/waveforms/make_tiny_bank.py ../shared/data/waveforms/bbh_phenomthm.h5 data/waveforms/bank_tiny.h5
"""
import sys

import h5py

src, dst = sys.argv[1], sys.argv[2]
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    g["params"] = f["params"][:4]
    g["time"] = f["time"][::10]
    for name in ("amp_l2_m2", "phase_l2_m2"):
        g[name] = f[name][:4, ::10]
    for k, v in f.attrs.items():
        g.attrs[k] = v
