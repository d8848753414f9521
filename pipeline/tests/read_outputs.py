"""Reads a quickstart workdir with stock Python packages only (no code of ours).

    python read_outputs.py WORKDIR

Checks the dataset contract (dataset.json, manifest.parquet, safetensors
shards), the model weights and the evaluation outputs, and prints OK.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file

wd = Path(sys.argv[1])
ds = wd / "dataset"
info = json.loads((ds / "dataset.json").read_text())
manifest = pq.read_table(ds / "manifest.parquet").to_pydict()
assert set(manifest) >= {"sample_id", "shard", "index", "split", "label", "source"}, manifest.keys()
assert len(manifest["sample_id"]) == info["counts"]["total"]

seen = 0
for shard in info["shards"]:
    tensors = load_file(ds / shard["file"])
    x, y = tensors["x"], tensors["y"]
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.shape == (shard["samples"], *info["x"]["sample_shape"]), x.shape
    assert np.isfinite(x).all()
    rows = [i for i, s in enumerate(manifest["shard"]) if s == shard["index"]]
    labels = [manifest["label"][i] for i in sorted(rows, key=lambda i: manifest["index"][i])]
    assert list(y) == labels, (shard["file"], list(y), labels)
    seen += len(y)
assert seen == info["counts"]["total"]

weights = load_file(wd / "train" / "weights.safetensors")
assert "features.0.weight" in weights and "classifier.weight" in weights, list(weights)
assert weights["classifier.weight"].shape[0] == len(info["class_names"])

pred = pq.read_table(wd / "evaluate" / "predictions.parquet").to_pydict()
metrics = json.loads((wd / "evaluate" / "metrics.json").read_text())
correct = sum(a == b for a, b in zip(pred["label"], pred["predicted"]))
assert abs(correct / len(pred["label"]) - metrics["accuracy"]) < 1e-9
print("OK", len(manifest["sample_id"]), "samples,", len(info["shards"]), "shards")
