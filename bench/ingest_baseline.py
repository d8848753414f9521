"""The Python way to do `ingest.galaxy_images`' job, as a competent user would
write it, for bench/ingest.sh: each JPEG prepared by bench/pil_prep.py (PIL
decoding at the DCT-domain reduction our ingest uses, chosen by the same
rule, the same centre crop, an antialiasing resize); a seeded stratified
split; shards of safetensors and a Parquet manifest.

DTYPE says what the shards hold, as our ingest's `dtype`:
  u8   the 8-bit pixels after crop and resize, with dataset.json's `decode`
       block (scale 1/255, offset 0, `standardize`): the standardisation is
       left to the loader, as ours leaves it;
  f32  each band standardised here and stored as f32.

With PROCESSES > 1 a multiprocessing pool of that many workers makes the
shards, each worker decoding and writing whole shards of its own (no pixels
sent back to the parent), the usual way to use more cores from Python.

usage: ingest_baseline.py LABELS_CSV OUT_DIR SIZE CROP SHARD_SIZE SEED DTYPE [PROCESSES]
"""

import csv
import hashlib
import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import save_file

from pil_prep import standardize, stamp

labels_csv, out, size, crop, shard_size, seed, dtype = sys.argv[1:8]
size, crop, shard_size, seed = int(size), float(crop), int(shard_size), int(seed)
processes = int(sys.argv[8]) if len(sys.argv) > 8 else 1
if dtype not in ("u8", "f32"):
    sys.exit(f"DTYPE is u8 or f32, not {dtype}")
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
    a = stamp(path, size, crop)
    return a if dtype == "u8" else standardize(a)


def write_shard(job):
    """Decodes one shard's images and writes it; its manifest rows."""
    shard, split, chunk = job
    xs, ys, manifest = [], [], []
    for i, r in enumerate(chunk):
        path = labels_csv.parent / r["image"]
        xs.append(load(path))
        ys.append(classes.index(r["label"]))
        manifest.append((r["objid"], shard, i, split, ys[-1], str(path)))
    save_file(
        # safetensors writes the raw buffer: a stack of transposed views must be
        # made C-contiguous first, or the file holds the pixels out of order.
        {"x": np.ascontiguousarray(np.stack(xs)), "y": np.array(ys, dtype=np.int64)},
        str(out / "shards" / f"shard-{shard:05d}.safetensors"),
        metadata={"split": split},
    )
    return manifest


def main():
    jobs = []
    for split in ["train", "val", "test"]:
        members = sorted((r for r in rows if split_of[r["objid"]] == split), key=lambda r: key(r["objid"]))
        for start in range(0, len(members), shard_size):
            jobs.append((len(jobs), split, members[start : start + shard_size]))
    if processes > 1:
        with multiprocessing.Pool(processes) as pool:
            parts = pool.map(write_shard, jobs, chunksize=1)
    else:
        parts = [write_shard(j) for j in jobs]
    names = ["sample_id", "shard", "index", "split", "label", "source"]
    columns = list(zip(*(row for part in parts for row in part)))
    pq.write_table(pa.table(dict(zip(names, columns))), out / "manifest.parquet")
    info = {"x": {"dtype": "U8" if dtype == "u8" else "F32", "sample_shape": [3, size, size]}}
    if dtype == "u8":
        info["decode"] = {
            "scale": float(np.float32(1 / 255)),
            "offset": 0.0,
            "normalisation": {"kind": "standardize"},
        }
    (out / "dataset.json").write_text(json.dumps(info))
    print(f"{len(columns[0])} samples, {len(jobs)} shards, {dtype}, {processes} process(es)")


if __name__ == "__main__":
    main()
