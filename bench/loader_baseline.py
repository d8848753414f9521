"""PyTorch side of bench/loader.sh, tuned as a PyTorch user would tune it.

  prepare DATASET OUT   copy the training split of one of our datasets into
                        OUT/train.h5 (datasets x, y) and OUT/x.npy, OUT/y.npy
                        (not timed)
  run OUT --format F [--batch 64] [--workers 2] [--epochs 3]
                        read them with torch.utils.data.DataLoader
                        (persistent workers, so they are forked once, not
                        every epoch) and print samples per second (median
                        epoch) as JSON. F is one of:
      h5        one sample per item from HDF5 (h5py; the file and its
                datasets opened once per worker), full shuffle
      npy       one sample per item from a numpy memmap, full shuffle
      npy_batch a whole batch per item, one fancy-indexed memmap read of
                sorted indices (BatchSampler), full shuffle
      npy_shard what our loader does: shard-sized runs of 64 contiguous
                samples in a shuffled order, split between the workers,
                through a 1,024-sample shuffle buffer, batches of contiguous
                reads
"""

import argparse
import json
import os
import time

import h5py
import numpy as np
import torch
from safetensors.numpy import load_file
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, get_worker_info


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
        self.path, self.x, self.y = path, None, None
        with h5py.File(path, "r") as f:
            self.n = f["y"].shape[0]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        # Opened lazily, once per worker: h5py handles must not cross the
        # fork into workers; the datasets are looked up once, not per item.
        if self.x is None:
            f = h5py.File(self.path, "r")
            self.x, self.y = f["x"], f["y"][()]
        return torch.from_numpy(self.x[i]), int(self.y[i])


class Npy(Dataset):
    def __init__(self, out):
        self.x = np.load(os.path.join(out, "x.npy"), mmap_mode="r")
        self.y = np.load(os.path.join(out, "y.npy"))

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self.x[i])), int(self.y[i])


class NpyBatch(Npy):
    """Items are whole batches: a list of indices, read in one go."""

    def __getitem__(self, idx):
        idx = np.sort(np.asarray(idx))
        return torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])


class NpyShards(IterableDataset):
    """Our loader's access pattern: runs of `run` contiguous samples (our
    shards) in a seeded shuffled order, dealt round-robin to the workers,
    each worker passing its samples through a `buffer`-sample shuffle buffer
    and yielding batches."""

    def __init__(self, out, batch, run=64, buffer=1024):
        self.out, self.batch, self.run, self.buffer = out, batch, run, buffer
        self.epoch = 0

    def __iter__(self):
        x = np.load(os.path.join(self.out, "x.npy"), mmap_mode="r")
        y = np.load(os.path.join(self.out, "y.npy"))
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng(1000 + self.epoch)
        self.epoch += 1
        starts = rng.permutation(np.arange(0, x.shape[0], self.run))[wid::nw]
        # The buffer shared out: as many samples in flight as ours holds.
        buffer = max(self.buffer // nw, self.batch)
        local = np.random.default_rng(wid + 7 * self.epoch)
        pool = []

        def take(k):
            picked = []
            for _ in range(k):
                j = local.integers(len(pool))
                pool[j], pool[-1] = pool[-1], pool[j]
                picked.append(pool.pop())
            return torch.from_numpy(np.stack([p[0] for p in picked])), torch.tensor([p[1] for p in picked])

        for s in starts:
            pool.extend(zip(np.array(x[s : s + self.run]), y[s : s + self.run]))
            while len(pool) >= buffer:
                yield take(self.batch)
        while pool:
            yield take(min(self.batch, len(pool)))


def run(out, fmt, batch, workers, epochs):
    torch.manual_seed(1)
    common = dict(num_workers=workers, persistent_workers=workers > 0)
    if fmt == "h5":
        loader = DataLoader(H5(os.path.join(out, "train.h5")), batch_size=batch, shuffle=True, **common)
    elif fmt == "npy":
        loader = DataLoader(Npy(out), batch_size=batch, shuffle=True, **common)
    elif fmt == "npy_batch":
        ds = NpyBatch(out)
        sampler = BatchSampler(RandomSampler(ds), batch_size=batch, drop_last=False)
        loader = DataLoader(ds, sampler=sampler, batch_size=None, **common)
    else:
        loader = DataLoader(NpyShards(out, batch), batch_size=None, **common)
    rates = []
    for epoch in range(epochs):
        t = time.perf_counter()
        n = 0
        for x, y in loader:
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t))
    rates.sort()
    print(json.dumps({"format": fmt, "batch": batch, "workers": workers, "samples": n,
                      "samples_per_second": rates[len(rates) // 2]}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dataset")
    p.add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--format", choices=["h5", "npy", "npy_batch", "npy_shard"], required=True)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.dataset, a.out)
    else:
        run(a.out, a.format, a.batch, a.workers, a.epochs)
