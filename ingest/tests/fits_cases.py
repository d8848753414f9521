"""Writes FITS files of every kind the ingest reader supports, with astropy, and
what astropy reads back from them, for ingest/tests/astropy_fits.rs.

usage: fits_cases.py OUT_DIR [REAL_FITS ...]

OUT_DIR/cases.json lists each case: the file, the HDU options, the shape and
the raw little-endian float32 file holding astropy's reading of it (NaN where
a pixel is missing), plus WCS checks: sky positions and the FITS pixel
(1-based) astropy's WCS gives for them. REAL_FITS files get WCS checks only.
"""

import bz2
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

# Real headers carry deprecated keywords astropy fixes and warns about.
warnings.simplefilter("ignore")
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20)
cases = []


def expected(name, arr):
    """Stores astropy's physical values as float32 little-endian."""
    raw = out / (name + ".expected.f32")
    np.asarray(arr, dtype="<f4").tofile(raw)
    return raw.name


def add(name, file, arr, hdu=None, weight_hdu=None, wcs=None):
    cases.append(
        {
            "name": name,
            "file": file,
            "hdu": hdu,
            "weight_hdu": weight_hdu,
            "shape": list(arr.shape),
            "expected": expected(name, arr),
            "wcs": wcs or [],
        }
    )


def physical(path, ext=0):
    """What astropy reads: BSCALE/BZERO applied, integer BLANK -> NaN."""
    with fits.open(path) as hl:
        h = hl[ext]
        data = h.data.astype(np.float64)
        blank = h.header.get("BLANK")
        if blank is not None and h.header["BITPIX"] > 0:
            raw = fits.getdata(path, ext=ext, do_not_scale_image_data=True)
            data[raw == blank] = np.nan
        return data.astype(np.float32)


shape = (20, 30)

# BITPIX 8, 16 (signed, scaled), 16 unsigned, 32, -32, -64, each with missing pixels.
u8 = rng.integers(0, 250, shape, dtype=np.uint8)
u8[3, 4] = 255
hdu = fits.PrimaryHDU(u8)
hdu.header["BLANK"] = 255
hdu.writeto(out / "bitpix8.fits")
add("bitpix8", "bitpix8.fits", physical(out / "bitpix8.fits"))

i16 = rng.integers(-30000, 30000, shape).astype(np.int16)
i16[0, 0] = -32768
hdu = fits.PrimaryHDU(i16)
hdu.header["BSCALE"] = 0.25
hdu.header["BZERO"] = 100.0
hdu.header["BLANK"] = -32768
hdu.writeto(out / "bitpix16_scaled.fits")
add("bitpix16_scaled", "bitpix16_scaled.fits", physical(out / "bitpix16_scaled.fits"))

u16 = rng.integers(0, 65535, shape).astype(np.uint16)
u16[1, 2] = 65535
fits.PrimaryHDU(u16).writeto(out / "bitpix16_unsigned.fits")  # BZERO = 32768
assert fits.getheader(out / "bitpix16_unsigned.fits")["BZERO"] == 32768
add("bitpix16_unsigned", "bitpix16_unsigned.fits", u16.astype(np.float32))

i32 = rng.integers(-(2**20), 2**20, shape).astype(np.int32)
i32[5, 5] = -999
hdu = fits.PrimaryHDU(i32)
hdu.header["BSCALE"] = 0.5
hdu.header["BZERO"] = -3.0
hdu.header["BLANK"] = -999
hdu.writeto(out / "bitpix32.fits")
add("bitpix32", "bitpix32.fits", physical(out / "bitpix32.fits"))

f32 = rng.normal(size=shape).astype(np.float32)
f32[2, 7] = np.nan
fits.PrimaryHDU(f32).writeto(out / "bitpix-32.fits")
add("bitpix-32", "bitpix-32.fits", f32)

f64 = rng.normal(size=shape) * 1e3
f64[4, 1] = np.nan
fits.PrimaryHDU(f64).writeto(out / "bitpix-64.fits")
add("bitpix-64", "bitpix-64.fits", f64.astype(np.float32))

# Whole-file compression, as SDSS frames are served (.bz2) and as often mirrored (.gz).
fits.PrimaryHDU(f32).writeto(out / "frame.fits.gz")
add("gzip", "frame.fits.gz", f32)
with open(out / "bitpix-32.fits", "rb") as src:
    (out / "frame.fits.bz2").write_bytes(bz2.compress(src.read()))
add("bzip2", "frame.fits.bz2", f32)

# A cube: three bands in one HDU.
cube = rng.normal(size=(3,) + shape).astype(np.float32)
fits.PrimaryHDU(cube).writeto(out / "cube.fits")
add("cube", "cube.fits", cube)


# A TAN WCS three ways: CD (SDSS frames), CDELT + PC, CDELT + CROTA2.
def tan_header(kind):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"] = 15.5, 10.0
    h["CRVAL1"], h["CRVAL2"] = 150.1172, 2.2058
    s = 0.396 / 3600
    th = np.radians(12.0)
    if kind == "cd":
        h["CD1_1"], h["CD1_2"] = -s * np.cos(th), s * np.sin(th)
        h["CD2_1"], h["CD2_2"] = s * np.sin(th), s * np.cos(th)
    elif kind == "pc":
        h["CDELT1"], h["CDELT2"] = -s, s
        h["PC1_1"], h["PC1_2"] = np.cos(th), -np.sin(th)
        h["PC2_1"], h["PC2_2"] = np.sin(th), np.cos(th)
    else:
        h["CDELT1"], h["CDELT2"] = -s, s
        h["CROTA2"] = 12.0
    return h


def wcs_checks(path, ext=0):
    """Sky positions around the frame and astropy's 1-based pixel for each."""
    with fits.open(path) as hl:
        w = WCS(hl[ext].header)
        ny, nx = hl[ext].data.shape[-2:]
    px = np.array([[1.0, 1.0], [nx, ny], [nx / 2 + 0.23, ny / 3 + 0.17], [0.2 * nx, 0.9 * ny], [-5.0, ny + 7.0]])
    sky = w.all_pix2world(px, 1)
    back = w.all_world2pix(sky, 1)
    return [
        {"ra": float(r), "dec": float(d), "x": float(x), "y": float(y)}
        for (r, d), (x, y) in zip(sky, back)
    ]


for kind in ["cd", "pc", "crota"]:
    name = f"wcs_{kind}.fits"
    fits.PrimaryHDU(f32, header=tan_header(kind)).writeto(out / name)
    add(f"wcs_{kind}", name, f32, wcs=wcs_checks(out / name))

# Tile-compressed files (.fz): RICE_1 and GZIP_1, integer and float; and a DES
# coadd-like layout (empty primary, compressed SCI and WGT with EXTNAME).
for ctype in ["RICE_1", "GZIP_1"]:
    for label, arr in [("i16", i16), ("f32", f32)]:
        name = f"tile_{ctype.lower()}_{label}.fits.fz"
        hl = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(arr, compression_type=ctype)])
        hl.writeto(out / name)
        # Lossy float quantisation: expect what astropy decompresses.
        add(f"tile_{ctype}_{label}", name, fits.getdata(out / name, ext=1).astype(np.float32))

sci = (rng.normal(size=shape) * 10 + 100).astype(np.float32)
wgt = rng.uniform(0.5, 2.0, shape).astype(np.float32)
wgt[:, :3] = 0.0  # masked columns at the tile edge
hl = fits.HDUList(
    [
        fits.PrimaryHDU(),
        fits.CompImageHDU(sci, header=tan_header("cd"), name="SCI", compression_type="RICE_1"),
        fits.CompImageHDU(wgt, name="WGT", compression_type="RICE_1"),
    ]
)
hl.writeto(out / "des_tile.fits.fz")
sci_back = fits.getdata(out / "des_tile.fits.fz", extname="SCI").astype(np.float32)
wgt_back = fits.getdata(out / "des_tile.fits.fz", extname="WGT")
masked = sci_back.copy()
masked[~(wgt_back > 0)] = np.nan
add("des_sci", "des_tile.fits.fz", sci_back, hdu="SCI", wcs=wcs_checks(out / "des_tile.fits.fz", "SCI"))
add("des_sci_weighted", "des_tile.fits.fz", masked, hdu="SCI", weight_hdu="WGT")
add("des_by_index", "des_tile.fits.fz", masked, hdu=1, weight_hdu=2)

real = []
for p in sys.argv[2:]:
    real.append({"file": p, "wcs": wcs_checks(p)})

(out / "cases.json").write_text(json.dumps({"cases": cases, "real": real}, indent=1))
print(f"{len(cases)} cases, {len(real)} real files in {out}")
