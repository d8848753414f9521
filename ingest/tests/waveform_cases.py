"""Writes waveform files in the LVC NR (knots/data layout) and SXS layouts with
h5py, and what scipy says they hold, for ingest/tests/waveform_readers.rs.

usage: waveform_cases.py OUT_DIR [LVC_FILE ...]

For each case, OUT_DIR/cases.json gives the file, the reader and its options,
the expected parameters, and sample times (already shifted to the peak) with
the expected amplitude and phase there: scipy's UnivariateSpline(X, Y, k=deg,
s=0) for LVC files (as romspline evaluates them), the raw columns for SXS.
"""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
from scipy.interpolate import UnivariateSpline

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
cases = []


def peak_of(t, a):
    """The grid's amplitude peak refined by a parabola (the readers' rule)."""
    i = int(np.argmax(a))
    if 0 < i < len(a) - 1:
        y0, y1, y2 = a[i - 1], a[i], a[i + 1]
        d = y0 - 2 * y1 + y2
        if d != 0:
            return t[i] + 0.5 * (y0 - y2) / d * (t[i + 1] - t[i])
    return t[i]


def lvc_expectation(path, dt, n_checks=40):
    with h5py.File(path, "r") as f:
        def spline(g):
            g = f[g]
            x, y = (g["X"][()], g["Y"][()]) if "X" in g else (g["knots"][()], g["data"][()])
            return UnivariateSpline(x, y, k=int(g["deg"][()]), s=0), x[0], x[-1]

        amp, a0, a1 = spline("amp_l2_m2")
        phase, p0, p1 = spline("phase_l2_m2")
        m1, m2 = f.attrs["mass1"], f.attrs["mass2"]
        s1, s2 = f.attrs["spin1z"], f.attrs["spin2z"]
    t0, t1 = max(a0, p0), min(a1, p1)
    grid = t0 + np.arange(int(np.floor((t1 - t0) / dt)) + 1) * dt
    peak = peak_of(grid, amp(grid))
    idx = np.linspace(0, len(grid) - 1, n_checks).astype(int)
    params = [m1 / m2, s1, s2] if m1 >= m2 else [m2 / m1, s2, s1]
    return {
        "params": [float(v) for v in params],
        "samples": len(grid),
        "checks": [
            {"i": int(i), "t": float(grid[i] - peak), "amp": float(amp(grid[i])), "phase": float(phase(grid[i]))}
            for i in idx
        ],
    }


# An LVC file in the older knots/data layout, degree 5, lighter body first.
x = np.sort(np.concatenate([np.linspace(-3000, -200, 300), np.linspace(-199, 80, 400)]))
amp = 0.3 / (1 + ((x - 5.0) / 60.0) ** 2) ** 0.35
phase = -0.5 * np.cumsum(np.gradient(x) * 0.02 * (1 + 4 / (1 + np.exp(-(x + 50) / 20))))
name = "lvc_knots_data.h5"
with h5py.File(out / name, "w") as f:
    f.attrs["Format"] = 1
    f.attrs["mass1"], f.attrs["mass2"] = 0.25, 0.75  # q = 3, bodies swapped
    f.attrs["eta"] = 0.25 * 0.75
    f.attrs["spin1z"], f.attrs["spin2z"] = -0.4, 0.6
    for g, y in [("amp_l2_m2", amp), ("phase_l2_m2", phase)]:
        grp = f.create_group(g)
        grp["knots"], grp["data"], grp["deg"] = x, y, 5
        grp["tol"], grp["errors"] = 1e-6, np.zeros(0)
cases.append({"name": "knots_data", "reader": "lvcnr", "file": name, "dt": 0.5, **lvc_expectation(out / name, 0.5)})

# The same file with an eta that contradicts the masses: LAL refuses it, so must we.
bad = "lvc_bad_eta.h5"
with h5py.File(out / name, "r") as src, h5py.File(out / bad, "w") as dst:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    dst.attrs["eta"] = 0.22
    for g in src:
        src.copy(g, dst)
cases.append({"name": "bad_eta", "reader": "lvcnr", "file": bad, "dt": 0.5, "error": "eta"})

# A file without the phase group.
missing = "lvc_missing_phase.h5"
with h5py.File(out / name, "r") as src, h5py.File(out / missing, "w") as dst:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    src.copy("amp_l2_m2", dst)
cases.append({"name": "missing_phase", "reader": "lvcnr", "file": missing, "dt": 0.5, "error": "phase_l2_m2"})

# An SXS file: three extrapolation orders, several modes, metadata.json.
ts = np.linspace(-2500.0, 120.0, 5241)
def h_of(order, l, m):
    a = (0.2 if (l, m) == (2, 2) else 0.03) / (1 + ((ts - 3.0 * order) / 50.0) ** 2) ** 0.4
    ph = -m / 2 * (0.03 * ts + 0.5 * np.log1p(np.exp(ts / 15.0)))
    return a * np.cos(ph), a * np.sin(ph)
name = "rhOverM_Asymptotic_GeometricUnits_CoM.h5"
with h5py.File(out / name, "w") as f:
    for order in (2, 3, 4):
        g = f.create_group(f"Extrapolated_N{order}.dir")
        for l, m in [(2, 2), (2, -2), (3, 3), (2, 1)]:
            re, im = h_of(order, l, m)
            g[f"Y_l{l}_m{m}.dat"] = np.stack([ts, re, im], axis=1)
meta = {
    "alternative_names": ["SXS:BBH:9999"],
    "relaxed_mass1": 0.6, "relaxed_mass2": 0.4,
    "relaxed_dimensionless_spin1": [0.0, 0.0, 0.3],
    "relaxed_dimensionless_spin2": [0.01, 0.0, -0.2],
    "relaxed_eccentricity": "<1e-4",
}
(out / "metadata.json").write_text(json.dumps(meta))
re, im = h_of(3, 2, 2)
power = sum(np.square(h_of(3, l, m)).sum(axis=0) for l, m in [(2, 2), (2, -2), (3, 3), (2, 1)])
peak = peak_of(ts, power)
idx = np.linspace(0, len(ts) - 1, 40).astype(int)
cases.append({
    "name": "sxs_n3", "reader": "sxs", "file": name, "order": 3, "metadata": "metadata.json",
    "params": [1.5, 0.3, -0.2], "samples": len(ts),
    "checks": [{"i": int(i), "t": float(ts[i] - peak), "amp": float(np.hypot(re[i], im[i])),
                "phase": float(np.unwrap(np.arctan2(im, re))[i])} for i in idx],
})
cases.append({"name": "sxs_no_order", "reader": "sxs", "file": name, "order": 5, "metadata": "metadata.json",
              "error": "Extrapolated_N5.dir"})

for p in sys.argv[2:]:
    cases.append({"name": Path(p).name, "reader": "lvcnr", "file": str(Path(p).resolve()), "dt": 1.0,
                  **lvc_expectation(p, 1.0)})

(out / "cases.json").write_text(json.dumps({"cases": cases}, indent=1))
print(f"{len(cases)} cases in {out}")
