"""The straightforward Python way to do `ingest.galaxy_images`' job, for
bench/ingest.sh: PIL decodes each JPEG, crops the centre, resizes with an
antialiasing filter; numpy standardises each band; a seeded stratified split;
shards of safetensors (x [n, C, H, W] f32, y [n] i64) and a Parquet manifest.

With PROCESSES > 1 the images are decoded by a multiprocessing pool of that
many workers (chunks of one shard, in order), the usual way to use more cores
from Python; the parent writes the shards.

usage: ingest_baseline.py LABELS_CSV OUT_DIR SIZE CROP SHARD_SIZE SEED [PROCESSES]
"""

import csv
import hashlib
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from safetensors.numpy import save_file

labels_csv, out, size, crop, shard_size, seed = sys.argv[1:7]
size, crop, shard_size, seed = int(size), float(crop), int(shard_size), int(seed)
processes = int(sys.argv[7]) if len(sys.argv) > 7 else 1
labels_csv, out = Path(labels_csv), Path(out)
(out / "shards").mkdir(parents=True, exist_ok=True)

with open(labels_csv, newline="") as f:
    rows = [r for r in csv.DictReader(f)]
classes = sorted({r["label"] for r in rows})


def key(objid):
    return hashlib.blake2b(f"{seed}:{objid}".encode(), digest_size=16).digest()


split_of = {}
for c in classes:
    members = sorted((r for r in rows if r["label"] == c), key=lambda r: key(r["objid"]))
    n = len(members)
    n_test, n_val = round(n * 0.2), round(n * 0.1)
    for i, r in enumerate(members):
        split_of[r["objid"]] = "test" if i < n_test else "val" if i < n_test + n_val else "train"


def load(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    cw, ch = round(w * crop), round(h * crop)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mean = a.mean(axis=(1, 2), keepdims=True)
    std = a.std(axis=(1, 2), keepdims=True)
    return (a - mean) / np.maximum(std, 1e-12)


def main():
    manifest = {k: [] for k in ["sample_id", "shard", "index", "split", "label", "source"]}
    chunks = []
    for split in ["train", "val", "test"]:
        members = sorted((r for r in rows if split_of[r["objid"]] == split), key=lambda r: key(r["objid"]))
        for start in range(0, len(members), shard_size):
            chunks.append((split, members[start : start + shard_size]))
    paths = [[str(labels_csv.parent / r["image"]) for r in chunk] for _, chunk in chunks]
    if processes > 1:
        pool = multiprocessing.Pool(processes)
        loaded = pool.imap(load_all, paths)
    else:
        loaded = map(load_all, paths)
    for shard, ((split, chunk), xs) in enumerate(zip(chunks, loaded)):
        ys = []
        for i, r in enumerate(chunk):
            ys.append(classes.index(r["label"]))
            path = labels_csv.parent / r["image"]
            for k, v in zip(manifest, [r["objid"], shard, i, split, ys[-1], str(path)]):
                manifest[k].append(v)
        save_file(
            # safetensors writes the raw buffer: a stack of transposed views must be
            # made C-contiguous first, or the file holds the pixels out of order.
            {"x": np.ascontiguousarray(np.stack(xs)), "y": np.array(ys, dtype=np.int64)},
            str(out / "shards" / f"shard-{shard:05d}.safetensors"),
            metadata={"split": split},
        )
    if processes > 1:
        pool.close()
        pool.join()
    pq.write_table(pa.table(manifest), out / "manifest.parquet")
    print(f"{len(manifest['sample_id'])} samples, {len(chunks)} shards, {processes} process(es)")


def load_all(paths):
    return [load(p) for p in paths]


if __name__ == "__main__":
    main()
