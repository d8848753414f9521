"""Loads a trained model's TorchScript module with PyTorch alone and checks
that it gives our outputs on a batch: `torchscript_check.py MODEL.pt
BATCH.safetensors`, where the batch file holds `x` (inputs as our loader
yields them) and `y` (what our network returned). Exits 1 on a difference
above 1e-5."""

import sys

import torch
from safetensors.torch import load_file

model = torch.jit.load(sys.argv[1], map_location="cpu")
model.eval()
batch = load_file(sys.argv[2])
with torch.no_grad():
    y = model(batch["x"])
diff = (y - batch["y"]).abs().max().item()
print(f"{sys.argv[1]}: batch {tuple(batch['x'].shape)} -> {tuple(y.shape)}, max abs difference {diff:.3g}")
if y.shape != batch["y"].shape or not diff <= 1e-5:
    sys.exit(1)
