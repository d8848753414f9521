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
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D, NoOverlapError
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


def add(name, file, arr, hdu=None, weight_hdu=None, wcs=None, integer=False):
    cases.append(
        {
            "name": name,
            "file": file,
            "hdu": hdu,
            "weight_hdu": weight_hdu,
            "shape": list(arr.shape),
            "expected": expected(name, arr),
            "wcs": wcs or [],
            "stamps": stamps(name, out / file, hdu, arr),
            "integer": integer,
        }
    )


def stamps(name, path, hdu, arr):
    """astropy's Cutout2D (mode='partial', NaN fill) of `arr` (what astropy
    reads, weights applied) at sky positions around the frame: inside, across
    each edge and corner, and off the frame (expected None)."""
    with fits.open(path) as hl:
        h = hl[hdu if hdu is not None else next(i for i, x in enumerate(hl) if x.data is not None)].header
    w = WCS(h).celestial
    if not w.has_celestial:
        return []
    ny, nx = arr.shape[-2:]
    # Zero-based pixel positions; a few off the frame.
    # Fractional parts keep x - size/2 away from integers, where astropy's own
    # pixel -> sky -> pixel round trip (~1e-10 px) could flip the rounding.
    px = [(nx * 0.43 + 0.27, ny * 0.52 + 0.11), (0.8, 1.3), (nx - 1.2, ny - 0.9), (nx * 0.5 + 0.37, -0.3),
          (-0.45, ny * 0.5 + 0.21), (nx * 0.7 + 0.13, ny - 0.6), (-4.2, 3.3), (nx + 3.7, ny * 0.5 + 0.3),
          (nx * 0.5 + 0.4, ny + 9.2)]
    out_ = []
    for k, (x, y) in enumerate(px):
        sky = w.pixel_to_world(x, y)
        for size in (5, 8):
            rec = {"ra": float(sky.ra.deg), "dec": float(sky.dec.deg), "size": size, "x": x, "y": y}
            bands = arr if arr.ndim == 3 else arr[None]
            try:
                cuts = [Cutout2D(b, sky, (size, size), wcs=w, mode="partial", fill_value=np.nan).data for b in bands]
                on = -0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5
                rec["expected"] = expected(f"{name}.stamp{k}.{size}", np.stack(cuts)) if on else None
            except NoOverlapError:
                rec["expected"] = None
            out_.append(rec)
    return out_


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



# Every encoding case carries a TAN WCS, so stamps are checked on each.
TAN = tan_header("cd")

# BITPIX 8, 16 (signed, scaled), 16 unsigned, 32, -32, -64, each with missing pixels.
u8 = rng.integers(0, 250, shape, dtype=np.uint8)
u8[3, 4] = 255
hdu = fits.PrimaryHDU(u8, header=TAN.copy())
hdu.header["BLANK"] = 255
hdu.writeto(out / "bitpix8.fits")
add("bitpix8", "bitpix8.fits", physical(out / "bitpix8.fits"), integer=True)

i16 = rng.integers(-30000, 30000, shape).astype(np.int16)
i16[0, 0] = -32768
hdu = fits.PrimaryHDU(i16, header=TAN.copy())
hdu.header["BSCALE"] = 0.25
hdu.header["BZERO"] = 100.0
hdu.header["BLANK"] = -32768
hdu.writeto(out / "bitpix16_scaled.fits")
add("bitpix16_scaled", "bitpix16_scaled.fits", physical(out / "bitpix16_scaled.fits"), integer=True)

u16 = rng.integers(0, 65535, shape).astype(np.uint16)
u16[1, 2] = 65535
fits.PrimaryHDU(u16, header=TAN.copy()).writeto(out / "bitpix16_unsigned.fits")  # BZERO = 32768
assert fits.getheader(out / "bitpix16_unsigned.fits")["BZERO"] == 32768
add("bitpix16_unsigned", "bitpix16_unsigned.fits", u16.astype(np.float32), integer=True)

i32 = rng.integers(-(2**20), 2**20, shape).astype(np.int32)
i32[5, 5] = -999
hdu = fits.PrimaryHDU(i32, header=TAN.copy())
hdu.header["BSCALE"] = 0.5
hdu.header["BZERO"] = -3.0
hdu.header["BLANK"] = -999
hdu.writeto(out / "bitpix32.fits")
add("bitpix32", "bitpix32.fits", physical(out / "bitpix32.fits"), integer=True)

f32 = rng.normal(size=shape).astype(np.float32)
f32[2, 7] = np.nan
fits.PrimaryHDU(f32, header=TAN.copy()).writeto(out / "bitpix-32.fits")
add("bitpix-32", "bitpix-32.fits", f32)

f64 = rng.normal(size=shape) * 1e3
f64[4, 1] = np.nan
fits.PrimaryHDU(f64, header=TAN.copy()).writeto(out / "bitpix-64.fits")
add("bitpix-64", "bitpix-64.fits", f64.astype(np.float32))

# Whole-file compression, as SDSS frames are served (.bz2) and as often mirrored (.gz).
fits.PrimaryHDU(f32, header=TAN.copy()).writeto(out / "frame.fits.gz")
add("gzip", "frame.fits.gz", f32)
with open(out / "bitpix-32.fits", "rb") as src:
    (out / "frame.fits.bz2").write_bytes(bz2.compress(src.read()))
add("bzip2", "frame.fits.bz2", f32)

# A cube: three bands in one HDU.
cube = rng.normal(size=(3,) + shape).astype(np.float32)
fits.PrimaryHDU(cube, header=TAN.copy()).writeto(out / "cube.fits")
add("cube", "cube.fits", cube)


def wcs_checks(path, ext=0):
    """Sky positions around the frame and astropy's 1-based pixel for each."""
    with fits.open(path) as hl:
        w = WCS(hl[ext].header).celestial
        ny, nx = hl[ext].data.shape[-2:]
    px = np.array([[1.0, 1.0], [nx, ny], [nx / 2 + 0.23, ny / 3 + 0.17], [0.2 * nx, 0.9 * ny], [-5.0, ny + 7.0]])
    sky = w.all_pix2world(px, 1)
    back = w.all_world2pix(sky, 1, tolerance=1e-12, maxiter=100)
    return [
        {"ra": float(r), "dec": float(d), "x": float(x), "y": float(y)}
        for (r, d), (x, y) in zip(sky, back)
    ]


for kind in ["cd", "pc", "crota"]:
    name = f"wcs_{kind}.fits"
    fits.PrimaryHDU(f32, header=tan_header(kind)).writeto(out / name)
    add(f"wcs_{kind}", name, f32, wcs=wcs_checks(out / name))

# Distorted frames as astropy writes them: TAN-SIP (3rd order, a few pixels at
# the corners) and DES/SCAMP TPV (PV1_/PV2_ up to 3rd order), on a larger
# frame so the distortion matters.
big = rng.normal(size=(150, 200)).astype(np.float32)
sip = tan_header("cd")
sip["CTYPE1"], sip["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
sip["CRPIX1"], sip["CRPIX2"] = 90.5, 70.0
sip["A_ORDER"], sip["B_ORDER"] = 3, 3
for k, v in {"A_2_0": 4e-5, "A_1_1": -2e-5, "A_0_2": 1e-5, "A_3_0": 3e-7, "A_1_2": -1e-7,
             "B_2_0": -1e-5, "B_1_1": 3e-5, "B_0_2": 2e-5, "B_0_3": 2e-7, "B_2_1": 1e-7}.items():
    sip[k] = v
fits.PrimaryHDU(big, header=sip).writeto(out / "wcs_sip.fits")
assert WCS(sip).sip is not None
add("wcs_sip", "wcs_sip.fits", big, wcs=wcs_checks(out / "wcs_sip.fits"))

tpv = tan_header("cd")
tpv["CTYPE1"], tpv["CTYPE2"] = "RA---TPV", "DEC--TPV"
tpv["CRPIX1"], tpv["CRPIX2"] = 120.0, 30.5
for k, v in {"PV1_0": 1e-5, "PV1_1": 1.001, "PV1_2": 2e-4, "PV1_4": 8.0, "PV1_5": -5.0, "PV1_6": 3.0,
             "PV1_7": 900.0, "PV1_9": -400.0, "PV1_11": 300.0,
             "PV2_0": -2e-5, "PV2_1": 0.999, "PV2_2": -1e-4, "PV2_4": -6.0, "PV2_5": 4.0, "PV2_6": 2.0,
             "PV2_8": 500.0, "PV2_10": -700.0, "PV2_11": -200.0}.items():
    tpv[k] = v
fits.PrimaryHDU(big, header=tpv).writeto(out / "wcs_tpv.fits")
plain = WCS(tan_header("cd"))
assert abs(WCS(tpv).all_pix2world([[1.0, 1.0]], 1) - plain.all_pix2world([[1.0 + 119.0, 1.0 + 29.5]], 1)).max() > 0
add("wcs_tpv", "wcs_tpv.fits", big, wcs=wcs_checks(out / "wcs_tpv.fits"))

# Tile-compressed files (.fz): RICE_1 and GZIP_1, integer and float; and a DES
# coadd-like layout (empty primary, compressed SCI and WGT with EXTNAME).
for ctype in ["RICE_1", "GZIP_1"]:
    for label, arr in [("i16", i16), ("f32", f32)]:
        name = f"tile_{ctype.lower()}_{label}.fits.fz"
        hl = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(arr, header=TAN.copy(), compression_type=ctype)])
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

def real_checks(path):
    """What astropy makes of a real frame: its celestial CTYPEs and, for
    positions around the frame, the RA/Dec of each (1-based) pixel."""
    with fits.open(path) as hl:
        i = next(i for i, x in enumerate(hl) if x.data is not None and x.data.ndim >= 2)
        h = hl[i].header
        ny, nx = hl[i].data.shape[-2:]
    w = WCS(h).celestial
    rec = {"file": str(path), "ctype": [h.get("CTYPE1"), h.get("CTYPE2")], "wcs": []}
    if not w.has_celestial or h.get("CTYPE1") is None:
        return rec
    px = np.array([[1.0, 1.0], [nx, ny], [nx / 2 + 0.23, ny / 3 + 0.17], [0.2 * nx, 0.9 * ny]])
    galactic = h["CTYPE1"].startswith("GLON")
    if galactic:
        # Catalogues give ICRS RA/Dec: astropy's transformation to galactic.
        sky = w.pixel_to_world(px[:, 0] - 1, px[:, 1] - 1).icrs
        ras, decs = sky.ra.deg, sky.dec.deg
    else:
        # The frame's own equatorial system (FK5 J2000 taken as ICRS, as we do).
        ras, decs = w.all_pix2world(px[:, 0], px[:, 1], 1)
    for (x, y), ra, dec in zip(px, ras, decs):
        rec["wcs"].append({"ra": float(ra), "dec": float(dec), "x": float(x), "y": float(y), "galactic": galactic})
    return rec


real = [real_checks(p) for p in sys.argv[2:]]

(out / "cases.json").write_text(json.dumps({"cases": cases, "real": real}, indent=1))
print(f"{len(cases)} cases, {len(real)} real files in {out}")
