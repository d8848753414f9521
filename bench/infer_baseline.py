"""The PyTorch side of bench/infer.sh: what a user would write to catalogue
images with a trained model's TorchScript file, doing the work
`infer.classifier` does: decode each JPEG (PIL), crop the centre, resize with
a triangle filter, round to 8 bits as the training data was, standardise each
band, run the network (`model.pt`) on batches, softmax, and write the
probabilities with the ids as Parquet.

    infer_baseline.py TABLE MODEL_PT OUT.parquet SIZE CROP BATCH CORES

A DataLoader with CORES worker processes prepares the images while the main
process runs the network on CORES libtorch threads.
"""

import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import torch
from PIL import Image

table, model_pt, out, size, crop, batch, cores = sys.argv[1:8]
size, crop, batch, cores = int(size), float(crop), int(batch), int(cores)


class Images(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = Image.open(self.paths[i]).convert("RGB")
        w, h = img.size
        cw, ch = round(w * crop), round(h * crop)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
        return torch.from_numpy((x - mean) / np.maximum(std, 1e-12))


rows = pcsv.read_csv(table, convert_options=pcsv.ConvertOptions(column_types={"objid": pa.string()}))
ids = rows.column("objid").to_pylist()
paths = rows.column("image").to_pylist()
torch.set_num_threads(cores)
model = torch.jit.load(model_pt, map_location="cpu").eval()
loader = torch.utils.data.DataLoader(Images(paths), batch_size=batch, num_workers=cores)
probs = []
with torch.no_grad():
    for x in loader:
        probs.append(torch.softmax(model(x), dim=-1).numpy())
p = np.concatenate(probs)
cols = {"objid": ids}
for k in range(p.shape[1]):
    cols[f"p_{k}"] = p[:, k]
pq.write_table(pa.table(cols), out)
print(f"{len(ids)} images")
