"""Where an AI-GW run's mismatch comes from.

usage: waveform_errors.py WORKDIR [--attribute] [--python-overlap N]

Reads a `workflows/waveforms.yaml` workdir scored on its own test split
(predict/predictions.parquet, overlap/overlaps.parquet, generate/bank.h5,
dataset/dataset.json for the time grid and phase alignment) and prints the errors in the
parameters the waveform depends on: the symmetric mass ratio eta, the
effective spin chi_eff = (q chi1z + chi2z) / (1 + q) and the antisymmetric
spin chi_a = (chi1z - chi2z) / 2, their correlation, and a least-squares fit
of the mismatch 1 - overlap to a quadratic form in (d eta, d chi_eff, d chi_a)
in units of each one's spread over the test set.

--attribute regenerates the test set (lalsuite, data/make_bank.py) four more
times, each with one part of the error removed: q true (spins predicted); both
spins shifted alike so chi_eff is the true one; the spins shifted apart so
chi_a is the true one and chi_eff the predicted one; and chi2z true; and prints the
median / 5th-percentile overlap of each.

--python-overlap N recomputes N of eval.overlap's overlaps independently with
numpy (the same aLIGO fit, 60 Msun, 20 Hz, time and phase maximised on lags
1/8 of the dataset's time step) and prints the largest difference: a check of
the Rust stage. It also prints their median with the lags on the samples
alone and 16 to a step, to show what the time resolution of the maximum is worth.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
MSUN_S = 4.925490947641267e-6
MTOT, F_LOW = 60.0, 20.0


def eta(q):
    return q / (1 + q) ** 2


def chi_eff(p):
    return (p[:, 0] * p[:, 1] + p[:, 2]) / (1 + p[:, 0])


def chi_a(p):
    return (p[:, 1] - p[:, 2]) / 2


class Matcher:
    """Overlaps of h+ = A cos(phi) on the dataset's time grid (start, step in M, count)."""

    def __init__(self, time, grid):
        self.time = time
        start, step, count = grid
        self.grid = start + step * np.arange(int(count))
        dt = step * MTOT * MSUN_S
        self.n = 1 << int(np.ceil(np.log2(2 * len(self.grid))))
        df = 1.0 / (self.n * dt)
        self.k = np.arange(max(1, int(F_LOW / df)), self.n // 2)
        x = self.k * df / 245.4
        self.w = 1.0 / (1e-48 * (0.0152 * x**-4 + 0.2935 * x**2.25 + 2.7951 * x**1.5
                                 - 6.5080 * x**0.75 + 17.7622))

    def spectra(self, amp, phase):
        h = np.array([np.interp(self.grid, self.time, a) * np.cos(np.interp(self.grid, self.time, f))
                      for a, f in zip(amp, phase)])
        return np.fft.fft(h, self.n, axis=1)[:, self.k]

    def match(self, sa, sb, oversampling=8):
        # Lags every step / oversampling, as eval.overlap's time_oversampling.
        lags = self.n * oversampling
        out = []
        for i in range(0, len(sa), 256):
            a, b = sa[i:i + 256], sb[i:i + 256]
            z = np.zeros((len(a), lags), complex)
            z[:, self.k] = np.conj(a) * b * self.w
            peak = np.abs(np.fft.ifft(z, axis=1) * lags).max(axis=1)
            out.append(peak / np.sqrt((np.abs(a) ** 2 * self.w).sum(1) * (np.abs(b) ** 2 * self.w).sum(1)))
        return np.concatenate(out)


def bank_rows(path, rows=None):
    with h5py.File(path, "r") as f:
        if rows is None:
            return f["time"][:], f["amp_l2_m2"][:], f["phase_l2_m2"][:]
        order = np.argsort(rows)
        amp = np.empty((len(rows), f["amp_l2_m2"].shape[1]), np.float32)
        phase = np.empty_like(amp)
        # h5py wants increasing indices.
        amp[order] = f["amp_l2_m2"][np.asarray(rows)[order]]
        phase[order] = f["phase_l2_m2"][np.asarray(rows)[order]]
        return f["time"][:], amp, phase


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir")
    ap.add_argument("--attribute", action="store_true")
    ap.add_argument("--python-overlap", type=int, default=0, metavar="N")
    a = ap.parse_args()
    w = a.workdir
    p = pq.read_table(os.path.join(w, "predict", "predictions.parquet")).to_pydict()
    ov = np.array(pq.read_table(os.path.join(w, "overlap", "overlaps.parquet")).column("overlap").to_pylist())
    pred = np.array([p["q"], p["chi1z"], p["chi2z"]], float).T
    true = np.array([p["q_true"], p["chi1z_true"], p["chi2z_true"]], float).T
    d = np.c_[eta(pred[:, 0]) - eta(true[:, 0]), chi_eff(pred) - chi_eff(true), chi_a(pred) - chi_a(true)]
    spread = np.c_[eta(true[:, 0]), chi_eff(true), chi_a(true)].std(axis=0)
    print(f"{len(ov)} test waveforms, overlap median {np.median(ov):.4f}, 5th percentile {np.percentile(ov, 5):.4f}")
    print("MAE eta {:.4f}  chi_eff {:.4f}  chi_a {:.4f}".format(*np.abs(d).mean(axis=0)))
    print(f"correlation of the eta and chi_eff errors: {np.corrcoef(d[:, 0], d[:, 1])[0, 1]:+.3f}")
    low = ov < np.median(ov)
    print(f"median |d chi_eff|: worse half {np.median(np.abs(d[low, 1])):.4f}, "
          f"better half {np.median(np.abs(d[~low, 1])):.4f}")
    z = d / spread
    keep = ov > 0.8
    if keep.sum() >= 20:
        x = np.c_[z[:, 0] ** 2, 2 * z[:, 0] * z[:, 1], z[:, 1] ** 2, z[:, 2] ** 2]
        c, *_ = np.linalg.lstsq(x[keep], 1 - ov[keep], rcond=None)
        r = 1 - ov[keep] - x[keep] @ c
        r2 = 1 - (r**2).sum() / ((1 - ov[keep] - (1 - ov[keep]).mean()) ** 2).sum()
        print(f"1 - overlap ~ {c[0]:.2f} de^2 + 2 ({c[1]:+.2f}) de dc + {c[2]:.2f} dc^2 + {c[3]:+.3f} da^2 "
              f"(standardised errors; R^2 {r2:.2f}, overlaps above 0.8)")

    ids = [int(s.rsplit("#", 1)[1]) for s in p["sample_id"]]
    need_truth = a.attribute or a.python_overlap
    if not need_truth:
        return
    time, amp, phase = bank_rows(os.path.join(w, "generate", "bank.h5"), ids)
    with open(os.path.join(w, "dataset", "dataset.json")) as f:
        info = json.load(f)
    m = Matcher(time, info["time_grid"])
    if info["provenance"]["config"].get("align_phase"):
        # As the dataset stores it: the phase rotated to 0 at the peak (t = 0).
        phase = phase - np.array([np.interp(0.0, time, p) for p in phase])[:, None]
    truth = m.spectra(amp, phase)
    if a.python_overlap:
        n = min(a.python_overlap, len(ids))
        _, ra, rp = bank_rows(os.path.join(w, "regenerate", "bank.h5"))
        pred_s = m.spectra(ra[:n], rp[:n])
        mine = m.match(truth[:n], pred_s)
        print(f"numpy overlaps of the first {n}: largest difference from eval.overlap {np.abs(mine - ov[:n]).max():.4f}")
        medians = {up: np.median(m.match(truth[:n], pred_s, up)) for up in (1, 16)}
        medians[8] = np.median(mine)  # the default lags, computed above
        print("their median with lags every step / 1, 8, 16: "
              + ", ".join(f"{medians[up]:.5f}" for up in (1, 8, 16)))
    if a.attribute:
        clip = lambda v: np.clip(v, [1, -0.99, -0.99], [20, 0.99, 0.99])  # noqa: E731
        shift = (chi_eff(true) - chi_eff(pred)) / chi_eff(np.c_[pred[:, 0], np.ones((len(pred), 2))])
        # chi1z + u, chi2z - q u keeps chi_eff and moves chi_a by u (1 + q) / 2.
        ua = 2 * (chi_a(true) - chi_a(pred)) / (1 + pred[:, 0])
        variants = {
            "q true": np.c_[true[:, 0], pred[:, 1:]],
            "chi_eff true (both spins shifted alike)": np.c_[pred[:, 0], pred[:, 1:] + shift[:, None]],
            "chi_a true (chi_eff kept)": np.c_[pred[:, 0], pred[:, 1] + ua, pred[:, 2] - pred[:, 0] * ua],
            "chi2z true": np.c_[pred[:, :2], true[:, 2]],
        }
        with tempfile.TemporaryDirectory() as tmp:
            for name, v in variants.items():
                v = clip(v)
                csv = os.path.join(tmp, "p.csv")
                pcsv.write_csv(pa.table({"q": v[:, 0], "chi1z": v[:, 1], "chi2z": v[:, 2]}), csv)
                bank = os.path.join(tmp, "b.h5")
                subprocess.run([sys.executable, os.path.join(HERE, "..", "data", "make_bank.py"),
                                "--params", csv, "--out", bank], check=True, stderr=subprocess.DEVNULL)
                _, ra, rp = bank_rows(bank)
                o = m.match(truth, m.spectra(ra, rp))
                print(f"{name:42s} overlap median {np.median(o):.4f}, 5th percentile {np.percentile(o, 5):.4f}")


if __name__ == "__main__":
    main()
