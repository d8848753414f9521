//! FITS images through cfitsio.
//!
//! cfitsio applies BSCALE/BZERO while reading (so unsigned 16-bit images come
//! out right), opens whole-file `.gz` compression (`.bz2` is decompressed
//! here first: the cfitsio built from source has no bzip2), and presents a
//! tile-compressed (`.fz`, RICE_1 or GZIP) HDU as an ordinary image. Pixels
//! are read with NaN as cfitsio's null value, so integer `BLANK` pixels and a
//! compressed image's nulls arrive as NaN. This module adds zero-weight
//! pixels as NaN too, an unnamed HDU meaning "the first one with
//! data" (as astropy's `getdata` does, so a `.fz` file's empty primary is
//! passed over), and stamps cut at RA/Dec through the frame's WCS
//! ([`read_stamp`]), reading only the stamp's pixels (cfitsio's subset read,
//! which for a tile-compressed image decompresses only the tiles it needs).

use std::path::Path;

use fitsio::hdu::{FitsHdu, HduInfo};
use fitsio::images::{ImageDescription, ImageType};
use fitsio::FitsFile;
use serde::{Deserialize, Serialize};

use crate::preprocess::Image;
use crate::readers::wcs::{self, Card, Wcs, WcsCards, WcsError};
use crate::{Error, Result};

/// Which HDU holds the image: an index (0 is the primary) or an EXTNAME.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Hdu {
    /// Zero-based HDU index.
    Index(usize),
    /// The HDU's EXTNAME, such as `SCI`.
    Name(String),
}

impl std::fmt::Display for Hdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hdu::Index(i) => write!(f, "{i}"),
            Hdu::Name(n) => write!(f, "'{n}'"),
        }
    }
}

/// An image read from one HDU with the header values later steps need.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Pixels in physical units; missing ones (BLANK, NaN, zero weight) are NaN.
    pub image: Image,
    /// The zero-based index of the HDU read.
    pub hdu_index: usize,
    /// The WCS keywords found in that HDU.
    pub wcs_cards: WcsCards,
}

/// Why a stamp could not be cut.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CutoutError {
    /// The frame has no usable WCS.
    #[error("cannot cut at RA/Dec: {0}")]
    Wcs(#[from] WcsError),
    /// The position is not on the frame.
    #[error(
        "RA {ra:.6} Dec {dec:.6} is off the frame: pixel ({x:.1}, {y:.1}) outside 1..{width} x 1..{height}"
    )]
    OffFrame {
        /// Right ascension asked for (degrees).
        ra: f64,
        /// Declination asked for (degrees).
        dec: f64,
        /// Its FITS x (NaN when on the far side of the sky).
        x: f64,
        /// Its FITS y.
        y: f64,
        /// Frame width.
        width: usize,
        /// Frame height.
        height: usize,
    },
}

impl Frame {
    /// The frame's world coordinate system.
    pub fn wcs(&self) -> std::result::Result<Wcs, WcsError> {
        Wcs::from_cards(&self.wcs_cards, self.image.width, self.image.height)
    }
}

/// Where a `size` x `size` stamp centred on the zero-based pixel position
/// (x, y) lies on a `width` x `height` frame, by astropy's `Cutout2D` rule:
/// its first column is `ceil(x - size / 2)` (rows alike), and the part that
/// overlaps the frame is copied while the rest takes the fill value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampBox {
    /// The stamp's first column and row on the frame (may be negative).
    pub origin: (i64, i64),
    /// The stamp's side.
    pub size: usize,
    /// The overlapping columns `[x0, x1)` and rows `[y0, y1)` on the frame.
    pub cols: (usize, usize),
    /// See `cols`.
    pub rows: (usize, usize),
}

impl StampBox {
    /// The box for zero-based (x, y), or `None` when the position is off the frame.
    pub fn new(x: f64, y: f64, size: usize, width: usize, height: usize) -> Option<StampBox> {
        // Pixel i covers i - 0.5 .. i + 0.5.
        if !(x >= -0.5 && x < width as f64 - 0.5 && y >= -0.5 && y < height as f64 - 0.5) {
            return None;
        }
        let half = size as f64 / 2.0;
        let origin = ((x - half).ceil() as i64, (y - half).ceil() as i64);
        let span = |o: i64, n: usize| {
            let lo = o.max(0) as usize;
            let hi = (o + size as i64).clamp(0, n as i64) as usize;
            (lo.min(hi), hi)
        };
        Some(StampBox {
            origin,
            size,
            cols: span(origin.0, width),
            rows: span(origin.1, height),
        })
    }

    /// Copies the overlapping `plane` (the frame's pixels in the box's
    /// `cols` x `rows`, row-major) into a stamp filled with `fill` elsewhere.
    fn place(&self, plane: &[f32], fill: f32, out: &mut Vec<f32>) {
        let n = self.size;
        let w = self.cols.1 - self.cols.0;
        let start = out.len();
        out.resize(start + n * n, fill);
        let dx = (self.cols.0 as i64 - self.origin.0) as usize;
        let dy = (self.rows.0 as i64 - self.origin.1) as usize;
        for (r, row) in plane.chunks_exact(w.max(1)).enumerate() {
            let at = start + (dy + r) * n + dx;
            out[at..at + w].copy_from_slice(&row[..w]);
        }
    }
}

/// A `size` x `size` stamp of every band centred on (RA, Dec), as astropy's
/// `Cutout2D(data, SkyCoord(ra, dec), size, wcs=WCS(header), mode='partial',
/// fill_value=fill)` cuts it; only the stamp's pixels are read. Missing
/// pixels inside the frame (BLANK, NaN, zero weight) are NaN; a position off
/// the frame is a [`CutoutError::OffFrame`], inside the returned error.
pub fn read_stamp(
    path: &Path,
    hdu: Option<&Hdu>,
    weight: Option<&Hdu>,
    (ra, dec): (f64, f64),
    size: usize,
    fill: f32,
) -> Result<Image> {
    let mut file = open(path, hdu)?;
    let (index, h, label) = select(path, &mut file, hdu)?;
    let (channels, height, width) = image_shape(path, &h, &label)?;
    let at = || Some(format!("HDU {label}"));
    let cards = read_wcs_cards(&mut file, &h);
    let wcs = Wcs::from_cards(&cards, width, height)
        .map_err(|e| Error::format(path, at(), CutoutError::Wcs(e).to_string()))?;
    let off = |x: f64, y: f64| {
        let e = CutoutError::OffFrame {
            ra,
            dec,
            x,
            y,
            width,
            height,
        };
        Error::format(path, Some(format!("HDU {index}")), e.to_string())
    };
    let (x, y) = wcs
        .world_to_pixel(ra, dec)
        .ok_or_else(|| off(f64::NAN, f64::NAN))?;
    let b = StampBox::new(x - 1.0, y - 1.0, size, width, height).ok_or_else(|| off(x, y))?;
    let shape = (channels, height, width);
    let mut region = read_region(path, &mut file, &h, &label, shape, b.cols, b.rows)?;
    if let Some(wsel) = weight {
        mask_by_weight(path, &mut file, &mut region, shape, wsel, b.cols, b.rows)?;
    }
    let mut data = Vec::with_capacity(channels * size * size);
    for c in 0..channels {
        b.place(region.plane(c), fill, &mut data);
    }
    Image::new(channels, size, size, data)
        .ok_or_else(|| Error::format(path, at(), "stamp dimensions do not match"))
}

/// Reads a 2-D image or a 3-D cube (bands first) as f32 in physical units;
/// `None` picks the first HDU with image data.
pub fn read_image(path: &Path, hdu: Option<&Hdu>) -> Result<Image> {
    read_frame(path, hdu, None).map(|f| f.image)
}

/// Reads an image HDU with its WCS keywords. With `weight`, pixels whose weight
/// (an image of the same size in that HDU, such as DES `WGT`) is zero,
/// negative or NaN become NaN.
pub fn read_frame(path: &Path, hdu: Option<&Hdu>, weight: Option<&Hdu>) -> Result<Frame> {
    let mut file = open(path, hdu)?;
    let (index, h, label) = select(path, &mut file, hdu)?;
    let shape = image_shape(path, &h, &label)?;
    let (cols, rows) = ((0, shape.2), (0, shape.1));
    let mut image = read_region(path, &mut file, &h, &label, shape, cols, rows)?;
    if let Some(wsel) = weight {
        mask_by_weight(path, &mut file, &mut image, shape, wsel, cols, rows)?;
    }
    let wcs_cards = read_wcs_cards(&mut file, &h);
    Ok(Frame {
        image,
        hdu_index: index,
        wcs_cards,
    })
}

fn open(path: &Path, hdu: Option<&Hdu>) -> Result<FitsFile> {
    let bz2 = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bz2"));
    // cfitsio keeps its own descriptor, so the temporary file's name can go
    // (when `plain` drops) once it is open.
    let plain = if bz2 {
        Some(decompress_bzip2(path)?)
    } else {
        None
    };
    let opened = plain.as_ref().map_or(path, |p| p.path());
    FitsFile::open(opened).map_err(|source| Error::Fits {
        path: path.to_path_buf(),
        hdu: hdu
            .map(|h| h.to_string())
            .unwrap_or_else(|| "(first with data)".into()),
        source,
    })
}

/// `path` (bzip2) decompressed into a temporary file.
fn decompress_bzip2(path: &Path) -> Result<tempfile::NamedTempFile> {
    let io = |op: &'static str| {
        move |source: std::io::Error| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = std::fs::File::open(path).map_err(io("failed to open"))?;
    let mut plain = tempfile::Builder::new()
        .suffix(".fits")
        .tempfile()
        .map_err(io("failed to make a temporary file to decompress"))?;
    let mut reader = bzip2::read::BzDecoder::new(std::io::BufReader::new(file));
    std::io::copy(&mut reader, plain.as_file_mut()).map_err(io("failed to decompress (bzip2)"))?;
    Ok(plain)
}

/// The HDU asked for (or the first with image data): its index, handle and
/// the label errors name it by.
fn select(path: &Path, file: &mut FitsFile, hdu: Option<&Hdu>) -> Result<(usize, FitsHdu, String)> {
    match hdu {
        Some(sel) => {
            let h = match sel {
                Hdu::Index(i) => file.hdu(*i),
                Hdu::Name(n) => file.hdu(n.as_str()),
            }
            .map_err(|source| Error::Fits {
                path: path.to_path_buf(),
                hdu: sel.to_string(),
                source,
            })?;
            Ok((h.number, h, sel.to_string()))
        }
        None => {
            let (i, h) = first_image_hdu(path, file)?;
            Ok((i, h, i.to_string()))
        }
    }
}

/// The first HDU holding a non-empty image.
fn first_image_hdu(path: &Path, file: &mut FitsFile) -> Result<(usize, FitsHdu)> {
    let mut i = 0;
    while let Ok(h) = file.hdu(i) {
        if matches!(&h.info, HduInfo::ImageInfo { shape, .. } if !shape.is_empty()) {
            return Ok((i, h));
        }
        i += 1;
    }
    Err(Error::format(
        path,
        None,
        format!("none of its {i} HDU(s) holds image data"),
    ))
}

/// (bands, height, width) of an image HDU, refused when a file of this
/// length cannot hold that many pixels.
fn image_shape(path: &Path, h: &FitsHdu, label: &str) -> Result<(usize, usize, usize)> {
    let at = || Some(format!("HDU {label}"));
    let shape = match &h.info {
        HduInfo::ImageInfo { shape, .. } => shape.clone(),
        _ => {
            return Err(Error::format(
                path,
                at(),
                "expected an image HDU, found a table",
            ))
        }
    };
    let (channels, height, width) = match shape.as_slice() {
        [h, w] => (1, *h, *w),
        [c, h, w] => (*c, *h, *w),
        [] => {
            return Err(Error::format(
                path,
                at(),
                "the HDU holds no image data (NAXIS = 0)",
            ))
        }
        other => {
            return Err(Error::format(
                path,
                at(),
                format!("expected a 2-D image or a 3-D cube, found shape {other:?}"),
            ))
        }
    };
    // A damaged header can claim more pixels than the file holds (even
    // tile-compressed ones, whose ratio stays far below 64): refuse before
    // allocating them.
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
    let pixels = channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .filter(|&n| (n as u64).saturating_mul(4) <= file_len.saturating_mul(64).max(1 << 20));
    if pixels.is_none() {
        return Err(Error::format(
            path,
            at(),
            format!("NAXISn {shape:?} claim more pixels than a file of {file_len} bytes can hold"),
        ));
    }
    Ok((channels, height, width))
}

/// Every band of HDU `h` (of `shape` (bands, height, width)) within columns
/// `cols` and rows `rows` (half-open, zero-based), with cfitsio's null
/// substitution: integer `BLANK` pixels and the nulls of tile-compressed
/// images (`ZBLANK`, NaNs of quantised floats) come back as NaN, which the safe
/// `fitsio` reader, passing no null value, would leave as ordinary numbers.
/// One `fits_read_subset`, which for a tile-compressed image decompresses only
/// the tiles the region touches.
fn read_region(
    path: &Path,
    file: &mut FitsFile,
    h: &FitsHdu,
    label: &str,
    shape: (usize, usize, usize),
    cols: (usize, usize),
    rows: (usize, usize),
) -> Result<Image> {
    let fits_err = |source| Error::Fits {
        path: path.to_path_buf(),
        hdu: label.to_string(),
        source,
    };
    // Reading a keyword makes this HDU cfitsio's current one for the raw read below.
    h.read_key::<i64>(file, "NAXIS").map_err(fits_err)?;
    let (w, ht) = (cols.1 - cols.0, rows.1 - rows.0);
    let data = read_subset(file, shape, cols, rows).map_err(fits_err)?;
    Image::new(shape.0, ht, w, data).ok_or_else(|| {
        Error::format(
            path,
            Some(format!("HDU {label}")),
            "image data size does not match NAXISn",
        )
    })
}

/// Sets to NaN the pixels of `image` (the region `cols` x `rows` of a frame of
/// `shape`) whose weight in HDU `wsel` (one plane, or one per band) is zero,
/// negative or NaN.
fn mask_by_weight(
    path: &Path,
    file: &mut FitsFile,
    image: &mut Image,
    shape: (usize, usize, usize),
    wsel: &Hdu,
    cols: (usize, usize),
    rows: (usize, usize),
) -> Result<()> {
    let wlabel = format!("{wsel} (weight)");
    let (_, wh, _) = select(path, file, Some(wsel))?;
    let wshape = image_shape(path, &wh, &wlabel)?;
    if (wshape.1, wshape.2) != (shape.1, shape.2) || !(wshape.0 == 1 || wshape.0 == shape.0) {
        return Err(Error::format(
            path,
            Some(format!("HDU {wlabel}")),
            format!(
                "weight is {}x{}x{}, the image {}x{}x{}",
                wshape.0, wshape.1, wshape.2, shape.0, shape.1, shape.2
            ),
        ));
    }
    let w = read_region(path, file, &wh, &wlabel, wshape, cols, rows)?;
    let plane = image.height * image.width;
    for (i, v) in image.data.iter_mut().enumerate() {
        let wv = w.data[if w.channels == 1 { i % plane } else { i }];
        if wv.is_nan() || wv <= 0.0 {
            *v = f32::NAN;
        }
    }
    Ok(())
}

/// Reads every band of the current HDU (of `shape` (bands, height, width))
/// within `cols` x `rows`, band-major, with nulls as NaN.
#[allow(unsafe_code)]
fn read_subset(
    file: &mut FitsFile,
    shape: (usize, usize, usize),
    cols: (usize, usize),
    rows: (usize, usize),
) -> fitsio::errors::Result<Vec<f32>> {
    use std::os::raw::c_long;
    let mut data = vec![0f32; shape.0 * (cols.1 - cols.0) * (rows.1 - rows.0)];
    if data.is_empty() {
        return Ok(data);
    }
    // FITS axis order (x, y, band); corners 1-based and inclusive.
    let mut naxes: Vec<c_long> = vec![shape.2 as _, shape.1 as _, shape.0 as _];
    let mut blc: Vec<c_long> = vec![cols.0 as c_long + 1, rows.0 as c_long + 1, 1];
    let mut trc: Vec<c_long> = vec![cols.1 as _, rows.1 as _, shape.0 as _];
    let mut inc: Vec<c_long> = vec![1; 3];
    let naxis = if shape.0 > 1 { 3 } else { 2 };
    for v in [&mut naxes, &mut blc, &mut trc, &mut inc] {
        v.truncate(naxis);
    }
    let mut anynul = 0;
    let mut status = 0;
    // SAFETY: `data` holds the product over axes of (trc - blc + 1), what
    // cfitsio writes for this subset; the axis arrays have `naxis` elements;
    // the file pointer is valid for the borrow of `file`, and the caller has
    // made the image HDU current.
    unsafe {
        fitsio::sys::ffgsve(
            file.as_raw(),
            0,
            naxis as _,
            naxes.as_mut_ptr(),
            blc.as_mut_ptr(),
            trc.as_mut_ptr(),
            inc.as_mut_ptr(),
            f32::NAN,
            data.as_mut_ptr(),
            &mut anynul,
            &mut status,
        );
    }
    fitsio::errors::check_status(status).map(|_| data)
}

/// The WCS keywords present in the HDU (absent ones are left out).
fn read_wcs_cards(file: &mut FitsFile, h: &FitsHdu) -> WcsCards {
    let mut cards = WcsCards::new();
    let num = |file: &mut FitsFile, k: &str, cards: &mut WcsCards| {
        if let Ok(v) = h.read_key::<f64>(file, k) {
            cards.insert(k.to_string(), Card::Num(v));
        }
    };
    for k in wcs::NUMERIC_KEYWORDS {
        num(file, k, &mut cards);
    }
    for prefix in ["A", "B"] {
        if let Some(Card::Num(order)) = cards.get(&format!("{prefix}_ORDER")).cloned() {
            if (0.0..=16.0).contains(&order) {
                for k in wcs::sip_keywords(prefix, order as usize) {
                    num(file, &k, &mut cards);
                }
            }
        }
    }
    let tpv = h
        .read_key::<String>(file, "CTYPE1")
        .is_ok_and(|c| c.contains("-TPV"));
    if tpv {
        for k in wcs::tpv_keywords() {
            num(file, &k, &mut cards);
        }
    }
    for k in wcs::TEXT_KEYWORDS {
        if let Ok(v) = h.read_key::<String>(file, k) {
            cards.insert(k.to_string(), Card::Text(v));
        }
    }
    cards
}

/// Header cards written with an image, as (keyword, value, comment).
pub type Cards<'a> = &'a [(&'a str, CardValue, &'a str)];

/// A header value.
#[derive(Debug, Clone)]
pub enum CardValue {
    /// A string value.
    Str(String),
    /// A floating-point value.
    Float(f64),
    /// An integer value.
    Int(i64),
}

/// Writes a single-band float32 image into the primary HDU of a new file, with header cards.
///
/// The file is written under a temporary name and renamed, so a reader never
/// sees a half-written image.
pub fn write_image(path: &Path, image: &Image, cards: Cards<'_>) -> Result<()> {
    let tmp = path.with_extension("fits.tmp");
    let _ = std::fs::remove_file(&tmp);
    let fits_err = |source| Error::Fits {
        path: path.to_path_buf(),
        hdu: "0".into(),
        source,
    };
    let dims = if image.channels == 1 {
        vec![image.height, image.width]
    } else {
        vec![image.channels, image.height, image.width]
    };
    let desc = ImageDescription {
        data_type: ImageType::Float,
        dimensions: &dims,
    };
    {
        let mut f = FitsFile::create(&tmp)
            .with_custom_primary(&desc)
            .open()
            .map_err(fits_err)?;
        let hdu = f.primary_hdu().map_err(fits_err)?;
        for (key, value, comment) in cards {
            let r = match value {
                CardValue::Str(s) => hdu.write_key(&mut f, key, (s.as_str(), *comment)),
                CardValue::Float(x) => hdu.write_key(&mut f, key, (*x, *comment)),
                CardValue::Int(x) => hdu.write_key(&mut f, key, (*x, *comment)),
            };
            r.map_err(fits_err)?;
        }
        hdu.write_image(&mut f, &image.data).map_err(fits_err)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("failed to rename into", path, e))
}

/// Whether `path` names a FITS file (`.fits`, `.fit`, `.fts`, `.fz`, also gzip- or bzip2-compressed).
pub fn is_fits(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".bz2"))
        .unwrap_or(&name);
    [".fits", ".fit", ".fts", ".fz"]
        .iter()
        .any(|e| name.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_header_and_hdu_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.fits");
        let img = Image::new(1, 3, 4, (0..12).map(|v| v as f32).collect()).unwrap();
        write_image(
            &p,
            &img,
            &[("BUNIT", CardValue::Str("nanomaggy".into()), "")],
        )
        .unwrap();
        let back = read_image(&p, Some(&Hdu::Index(0))).unwrap();
        assert_eq!((back.channels, back.height, back.width), (1, 3, 4));
        assert_eq!(back.data, img.data);

        let err = read_image(&p, Some(&Hdu::Name("SCI".into()))).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HDU 'SCI'") && msg.contains("x.fits"), "{msg}");
        let err = read_image(&p, Some(&Hdu::Index(3)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HDU 3"), "{err}");
    }

    #[test]
    fn reads_a_real_image_as_the_raw_bytes_say() {
        // A CFHT MegaPrime cutout (BITPIX -32), committed under data/fits with its provenance.
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/fits/cfht_megaprime_sa110.fits");
        let img = read_image(&p, None).unwrap();
        assert_eq!((img.channels, img.height, img.width), (1, 101, 101));
        // Cross-check against the raw big-endian floats after the 2880-byte header
        // blocks, decoded here without cfitsio.
        let bytes = std::fs::read(&p).unwrap();
        let header_end = (0..bytes.len() / 2880)
            .map(|b| b * 2880)
            .find(|&o| {
                bytes[o..o + 2880]
                    .chunks(80)
                    .any(|c| c.starts_with(b"END     "))
            })
            .unwrap()
            + 2880;
        let raw: Vec<f32> = bytes[header_end..header_end + 101 * 101 * 4]
            .chunks(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(img.data, raw);
        assert!(raw.iter().any(|v| *v != 0.0));
    }
}
