"""How the Python baselines prepare a galaxy cutout, the way our ingest does
it and a competent PIL user would: the centre crop box rounded as ours
rounds it, the JPEG decoded at the largest DCT-domain reduction (libjpeg's
1/2, 1/4, 1/8 through `Image.draft`) that keeps the crop at least the
output size, and PIL's antialiasing bilinear resize to 8-bit pixels.
Imported by bench/ingest_baseline.py and bench/infer_baseline.py."""

import math

import numpy as np
from PIL import Image


def crop_box(w, h, crop):
    """The central `crop` of a w x h image, rounded as our ingest rounds
    (half away from zero): (x0, y0, width, height)."""
    cw = min(max(math.floor(w * crop + 0.5), 1), w)
    ch = min(max(math.floor(h * crop + 0.5), 1), h)
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def stamp(path, size, crop):
    """The image at `path` as 8-bit pixels [3, size, size]."""
    img = Image.open(path)
    w, h = img.size
    _, _, cw, ch = crop_box(w, h, crop)
    d = next((d for d in (8, 4, 2) if cw // d >= size and ch // d >= size), 1)
    img.draft("RGB", (math.ceil(w / d), math.ceil(h / d)))
    img = img.convert("RGB")
    x0, y0, cw, ch = crop_box(*img.size, crop)
    img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)
    return np.asarray(img).transpose(2, 0, 1)


def standardize(a):
    """Each band of 8-bit pixels scaled to [0, 1], then to zero mean and unit
    deviation, as f32."""
    a = a.astype(np.float32) / 255.0
    mean = a.mean(axis=(1, 2), keepdims=True)
    std = a.std(axis=(1, 2), keepdims=True)
    return (a - mean) / np.maximum(std, 1e-12)
