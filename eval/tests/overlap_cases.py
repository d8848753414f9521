"""Overlaps computed by pycbc.filter.match, for eval/tests/overlap_pycbc.rs.

usage: overlap_cases.py BANK_H5 OUT_JSON

Pairs of plus polarisations from a waveform bank at several total masses,
under a flat PSD, the analytic aLIGO design fit (Ajith 2011, eq. 4.7, written
out here in numpy) and a tabulated PSD; each series is zero-padded to a power
of two of at least twice its length first, so pycbc's circular correlation
equals the linear one. Also samples LALSimulation's tabulated aLIGO
zero-detuned high-power curve, which the fit approximates.
"""

import json
import sys

import h5py
import lalsimulation
import numpy as np
from pycbc.filter import match
from pycbc.types import FrequencySeries, TimeSeries

MSUN_S = 4.925490947641267e-6
bank, out = sys.argv[1], sys.argv[2]
with h5py.File(bank, "r") as f:
    t = f["time"][()]
    amp, phase = f["amp_l2_m2"][()], f["phase_l2_m2"][()]
hp = amp * np.cos(phase)

table = [(10.0, 4e-46), (20.0, 3e-47), (50.0, 6e-48), (100.0, 4e-48), (300.0, 5e-48), (1000.0, 2e-47), (4000.0, 2e-46)]
cases = []
for i, j, mass in [(0, 1, 60.0), (0, 2, 40.0), (1, 3, 80.0), (2, 3, 30.0), (0, 0, 50.0)]:
    dt = (t[1] - t[0]) * mass * MSUN_S
    a = hp[i]
    # The self-pair is shifted by 7 samples: the match must find the shift.
    b = np.roll(hp[j], 7) if i == j else hp[j]
    n = 1 << int(np.ceil(np.log2(2 * len(a))))
    pa, pb = np.zeros(n), np.zeros(n)
    pa[: len(a)], pb[: len(b)] = a, b
    ta, tb = TimeSeries(pa, delta_t=dt), TimeSeries(pb, delta_t=dt)
    df = 1.0 / (n * dt)
    freqs = np.arange(n // 2 + 1) * df
    for kind in ["flat", "aligo_design", "file"]:
        if kind == "flat":
            psd = None
        elif kind == "aligo_design":
            with np.errstate(divide="ignore"):
                x = freqs / 245.4
                vals = 1e-48 * (0.0152 * x**-4 + 0.2935 * x**2.25 + 2.7951 * x**1.5 - 6.5080 * x**0.75 + 17.7622)
            vals[0] = np.inf
            psd = FrequencySeries(vals, delta_f=df)
        else:
            ft, st = zip(*table)
            vals = np.interp(freqs, ft, st, left=np.inf, right=np.inf)
            psd = FrequencySeries(vals, delta_f=df)
        m, _ = match(ta, tb, psd=psd, low_frequency_cutoff=20.0)
        cases.append({"a": a.tolist(), "b": b.tolist(), "dt": dt, "f_low": 20.0, "psd": kind, "match": float(m), "mass": mass})
psd_samples = [[f, lalsimulation.SimNoisePSDaLIGOZeroDetHighPower(f)] for f in [10.0, 20.0, 55.5, 100.0, 245.4, 1000.0, 4096.0]]
json.dump({"cases": cases, "table": table, "aligo": psd_samples}, open(out, "w"))
print(len(cases), "cases;", ", ".join(f"{c['psd']} {c['match']:.4f}" for c in cases))
