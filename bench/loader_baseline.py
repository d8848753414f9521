"""PyTorch side of bench/loader.sh.

  prepare DATASET OUT   copy the training split of one of our datasets into
                        OUT/train.h5 (datasets x, y) and OUT/x.npy, OUT/y.npy
                        (not timed)
  run OUT --format h5|npy [--batch 64] [--workers 2] [--epochs 3]
                        read them with torch.utils.data.DataLoader
                        (shuffle=True, num_workers, batch_size) and print
                        samples per second (median epoch) as JSON
"""

import argparse
import json
import os
import time

import h5py
import numpy as np
import torch
from safetensors.numpy import load_file
from torch.utils.data import DataLoader, Dataset


def prepare(dataset, out):
    info = json.load(open(os.path.join(dataset, "dataset.json")))
    xs, ys = [], []
    for s in info["shards"]:
        if s["split"] == "train":
            t = load_file(os.path.join(dataset, s["file"]))
            xs.append(t["x"])
            ys.append(t["y"])
    x, y = np.concatenate(xs), np.concatenate(ys)
    os.makedirs(out, exist_ok=True)
    with h5py.File(os.path.join(out, "train.h5"), "w") as f:
        # One sample per chunk: what a per-sample reader wants.
        f.create_dataset("x", data=x, chunks=(1,) + x.shape[1:])
        f.create_dataset("y", data=y)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "y.npy"), y)
    print(json.dumps({"samples": int(x.shape[0]), "sample_shape": list(x.shape[1:])}))


class H5(Dataset):
    def __init__(self, path):
        self.path, self.f = path, None
        with h5py.File(path, "r") as f:
            self.n = f["y"].shape[0]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        # Opened lazily: h5py handles must not cross the fork into workers.
        if self.f is None:
            self.f = h5py.File(self.path, "r")
        return torch.from_numpy(self.f["x"][i]), int(self.f["y"][i])


class Npy(Dataset):
    def __init__(self, out):
        self.x = np.load(os.path.join(out, "x.npy"), mmap_mode="r")
        self.y = np.load(os.path.join(out, "y.npy"), mmap_mode="r")

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self.x[i])), int(self.y[i])


def run(out, fmt, batch, workers, epochs):
    ds = H5(os.path.join(out, "train.h5")) if fmt == "h5" else Npy(out)
    torch.manual_seed(1)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    rates = []
    for epoch in range(epochs):
        t = time.perf_counter()
        n = 0
        for x, y in loader:
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t))
    rates.sort()
    print(json.dumps({"format": fmt, "batch": batch, "workers": workers,
                      "samples_per_second": rates[len(rates) // 2]}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dataset")
    p.add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--format", choices=["h5", "npy"], required=True)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.dataset, a.out)
    else:
        run(a.out, a.format, a.batch, a.workers, a.epochs)
