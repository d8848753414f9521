"""Loads a trained model's TorchScript module with PyTorch alone and checks
that it gives our outputs on a batch: `torchscript_check.py MODEL.pt
BATCH.safetensors`, where the batch file holds `x` (inputs as our loader
yields them) and `y` (what our network returned). Exits 1 on a difference
above 1e-5, or when the module is tied to a device: it is loaded as a user
loads it (no `map_location`), and its graph may hold neither a tensor
constant off the CPU nor a move to a fixed device (`aten::to` with a device:
how a tensor that lived on a GPU when the module was traced is recorded)."""

import sys

import torch
from safetensors.torch import load_file

model = torch.jit.load(sys.argv[1])
model.eval()


def tied_to_a_device(module):
    """What in `module` names a device: CUDA tensor constants, attributes or
    parameters, and device moves in its forward graph."""
    found = []
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.device.type != "cpu":
            found.append(f"{name} on {t.device}")

    def walk(block):
        for node in block.nodes():
            for sub in node.blocks():
                walk(sub)
            if node.kind() == "prim::Constant" and node.output().type().kind() == "TensorType":
                t = node.output().toIValue()
                if t.device.type != "cpu":
                    found.append(f"a constant on {t.device}: {node}".strip())
            if node.kind() == "aten::to" and any(i.type().kind() == "DeviceObjType" for i in node.inputs()):
                found.append(f"a move to a fixed device: {node}".strip())

    walk(module.inlined_graph)
    return found


tied = tied_to_a_device(model)
for t in tied:
    print(f"{sys.argv[1]}: {t}")
batch = load_file(sys.argv[2])
with torch.no_grad():
    y = model(batch["x"])
diff = (y - batch["y"]).abs().max().item()
print(f"{sys.argv[1]}: batch {tuple(batch['x'].shape)} -> {tuple(y.shape)}, max abs difference {diff:.3g}")
if tied or y.shape != batch["y"].shape or not diff <= 1e-5:
    sys.exit(1)
