"""Checks that the README's numpy lines turn a compact dataset's shards into
what our loader yields. Usage: compact_input.py README DATASET OURS; prints
the largest difference and exits non-zero above 1e-6."""
import json
import re
import sys

import numpy as np
from safetensors.numpy import load_file

readme, dataset, ours = sys.argv[1:4]
text = open(readme, encoding="utf-8").read()
section = text[text.index("### A compact dataset's input"):]
code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
scope = {}
exec(code, scope)  # the README's own lines, nothing else
network_input = scope["network_input"]

info = json.load(open(f"{dataset}/dataset.json"))
assert info["x"]["dtype"] == "U8", info["x"]["dtype"]
want = load_file(ours)["x"]
parts = []
for split in ("train", "val", "test"):  # the order the test wrote ours in
    for s in info["shards"]:
        if s["split"] == split:
            parts.append(network_input(load_file(f"{dataset}/{s['file']}")["x"], info))
got = np.concatenate(parts)
assert got.shape == want.shape, (got.shape, want.shape)
worst = float(np.max(np.abs(got - want)))
print(f"{info['decode']['normalisation']['kind']}: {got.shape[0]} samples, largest difference {worst:.3g}")
sys.exit(0 if worst <= 1e-6 else 1)
