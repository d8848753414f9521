"""Generates a binary-black-hole waveform bank with lalsuite (PyPI), offline.

usage: make_bank.py --n N --seed S --out BANK.h5 [--approximant IMRPhenomTHM]
                    [--params PARAMS.parquet|csv] [--workers W]

Parameters are drawn with a seeded generator, q uniform in [1, 8] and chi1z,
chi2z uniform in [-0.8, 0.8], unless --params gives a table with columns
q, chi1z, chi2z (the regeneration step of an evaluation). Each waveform is
generated with SimInspiralChooseTDModes at a total mass of 60 Msun from
12 Hz, sampled at 4096 Hz, and rescaled to geometric units; its (2,2) mode's
amplitude |r h22 / M| and unwrapped phase are interpolated onto t = -4000 ..
100 M every 1 M with t = 0 at the peak of |h22|. Output: the bank layout
(/params (N, 3), /time, /amp_l2_m2, /phase_l2_m2), written to a temporary
name and renamed, so a half-written bank never looks complete.
"""

import argparse
import os
import sys
from multiprocessing import Pool

import h5py
import lal
import lalsimulation as ls
import numpy as np

MTOT = 60.0
F_MIN = 12.0
SRATE = 4096.0
GRID = np.arange(-4000.0, 100.0 + 0.5, 1.0)


def one(p):
    q, s1, s2 = p
    m1, m2 = MTOT * q / (1 + q), MTOT / (1 + q)
    dist = 1e6 * lal.PC_SI
    modes = ls.SimInspiralChooseTDModes(
        0.0, 1.0 / SRATE, m1 * lal.MSUN_SI, m2 * lal.MSUN_SI,
        0.0, 0.0, s1, 0.0, 0.0, s2, F_MIN, F_MIN, dist, None, 2,
        ls.GetApproximantFromString(APPROXIMANT),
    )
    h22 = ls.SphHarmTimeSeriesGetMode(modes, 2, 2)
    if h22 is None:
        raise RuntimeError(f"{APPROXIMANT} gave no (2,2) mode for q={q}, chi=({s1}, {s2})")
    h = h22.data.data
    t_m = (np.arange(len(h)) * h22.deltaT + float(h22.epoch)) / (MTOT * lal.MTSUN_SI)
    amp = np.abs(h) * dist / (MTOT * lal.MRSUN_SI)
    phase = np.unwrap(np.angle(h))
    t_m -= t_m[np.argmax(amp)]
    if t_m[0] > GRID[0] or t_m[-1] < GRID[-1]:
        raise RuntimeError(f"waveform q={q}, chi=({s1}, {s2}) spans {t_m[0]:.0f}..{t_m[-1]:.0f} M, "
                           f"shorter than {GRID[0]:.0f}..{GRID[-1]:.0f} M")
    return np.interp(GRID, t_m, amp), np.interp(GRID, t_m, phase)


def main():
    global APPROXIMANT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--approximant", default="IMRPhenomTHM")
    ap.add_argument("--params", help="table of q, chi1z, chi2z to generate instead of random draws")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    a = ap.parse_args()
    APPROXIMANT = a.approximant
    if a.params:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
        t = pq.read_table(a.params) if a.params.endswith(".parquet") else pcsv.read_csv(a.params)
        params = np.stack([t.column(c).to_numpy() for c in ("q", "chi1z", "chi2z")], axis=1).astype(float)
        # Predictions may stray outside what the model can generate; keep them physical.
        params[:, 0] = np.clip(params[:, 0], 1.0, 20.0)
        params[:, 1:] = np.clip(params[:, 1:], -0.99, 0.99)
    else:
        rng = np.random.default_rng(a.seed)
        params = np.stack([rng.uniform(1, 8, a.n), rng.uniform(-0.8, 0.8, a.n), rng.uniform(-0.8, 0.8, a.n)], axis=1)
    with Pool(max(1, a.workers), initializer=_init, initargs=(APPROXIMANT,)) as pool:
        out = []
        for i, r in enumerate(pool.imap(one, map(tuple, params), chunksize=8)):
            out.append(r)
            if (i + 1) % 500 == 0 or i + 1 == len(params):
                print(f"{i + 1}/{len(params)} waveforms", file=sys.stderr, flush=True)
    tmp = a.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f["params"] = params
        f["time"] = GRID
        f["amp_l2_m2"] = np.array([o[0] for o in out], dtype=np.float32)
        f["phase_l2_m2"] = np.array([o[1] for o in out], dtype=np.float32)
        f.attrs["source"] = (f"lalsuite {APPROXIMANT} via SimInspiralChooseTDModes (mtot={MTOT:g}, "
                             f"f_min={F_MIN:g}Hz, {SRATE:g}Hz), rescaled to geometric units")
        f.attrs["lalsimulation_version"] = ls.__version__
        f.attrs["seed"] = a.seed
    os.replace(tmp, a.out)


def _init(approximant):
    global APPROXIMANT
    APPROXIMANT = approximant


if __name__ == "__main__":
    main()
