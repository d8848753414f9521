"""The PyTorch side of bench/infer.sh: what a user would write to catalogue
images with a trained model's TorchScript file, tuned as PyTorch's own
performance advice says, doing the work `infer.classifier` does: each JPEG
prepared by bench/pil_prep.py (decoded at the DCT-domain reduction ours
uses, the same centre crop, resized to 8 bits as the training data was),
each band standardised, the network (`model.pt`, frozen with
`torch.jit.freeze`, weights and inputs channels-last, under
`torch.inference_mode`) on batches, softmax, the probabilities written with
the ids as Parquet.

    infer_baseline.py TABLE MODEL_PT OUT.parquet SIZE CROP BATCH WORKERS THREADS

A DataLoader with WORKERS worker processes (0: the main process) prepares
the images while the main process runs the network on THREADS libtorch
threads.
"""

import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import torch

from pil_prep import stamp, standardize

table, model_pt, out, size, crop, batch, workers, threads = sys.argv[1:9]
size, crop, batch, workers, threads = int(size), float(crop), int(batch), int(workers), int(threads)


class Images(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return torch.from_numpy(standardize(stamp(self.paths[i], size, crop)))


rows = pcsv.read_csv(table, convert_options=pcsv.ConvertOptions(column_types={"objid": pa.string()}))
ids = rows.column("objid").to_pylist()
paths = rows.column("image").to_pylist()
torch.set_num_threads(threads)
model = torch.jit.load(model_pt, map_location="cpu").eval()
model = torch.jit.freeze(model.to(memory_format=torch.channels_last))
loader = torch.utils.data.DataLoader(Images(paths), batch_size=batch, num_workers=workers)
probs = []
with torch.inference_mode():
    for x in loader:
        probs.append(torch.softmax(model(x.contiguous(memory_format=torch.channels_last)), dim=-1).numpy())
p = np.concatenate(probs)
cols = {"objid": ids}
for k in range(p.shape[1]):
    cols[f"p_{k}"] = p[:, k]
pq.write_table(pa.table(cols), out)
print(f"{len(ids)} images")
