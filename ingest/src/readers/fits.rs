//! FITS images through cfitsio.
//!
//! cfitsio applies BSCALE/BZERO while reading (so unsigned 16-bit images come
//! out right), opens whole-file `.gz` and `.bz2` compression, and presents a
//! tile-compressed (`.fz`, RICE_1 or GZIP) HDU as an ordinary image. Pixels
//! are read with NaN as cfitsio's null value, so integer `BLANK` pixels and a
//! compressed image's nulls arrive as NaN. This module adds zero-weight
//! pixels as NaN too, an unnamed HDU meaning "the first one with
//! data" (as astropy's `getdata` does, so a `.fz` file's empty primary is
//! passed over), and the frame's TAN WCS is read for stamps at RA/Dec.

use std::path::Path;

use fitsio::hdu::{FitsHdu, HduInfo};
use fitsio::images::{ImageDescription, ImageType};
use fitsio::FitsFile;
use serde::{Deserialize, Serialize};

use crate::preprocess::Image;
use crate::readers::wcs::{TanWcs, WcsError, WcsKeys};
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
    pub wcs_keys: WcsKeys,
}

/// Why a stamp could not be cut.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CutoutError {
    /// The frame has no usable TAN WCS.
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
    /// The frame's TAN projection.
    pub fn wcs(&self) -> std::result::Result<TanWcs, WcsError> {
        TanWcs::from_keys(&self.wcs_keys)
    }

    /// A `size` x `size` stamp centred on (RA, Dec), every band. Pixels of a stamp
    /// that overhangs the frame's edge are NaN; a centre off the frame is an error.
    pub fn cutout(
        &self,
        ra: f64,
        dec: f64,
        size: usize,
    ) -> std::result::Result<Image, CutoutError> {
        let (w, h) = (self.image.width, self.image.height);
        let off = |x: f64, y: f64| CutoutError::OffFrame {
            ra,
            dec,
            x,
            y,
            width: w,
            height: h,
        };
        let (x, y) = self
            .wcs()?
            .world_to_pixel(ra, dec)
            .ok_or_else(|| off(f64::NAN, f64::NAN))?;
        // FITS pixel n covers n - 0.5 .. n + 0.5.
        if !(x >= 0.5 && x < w as f64 + 0.5 && y >= 0.5 && y < h as f64 + 0.5) {
            return Err(off(x, y));
        }
        // Zero-based column of the stamp's first pixel, so the centre pixel is
        // the one holding (x, y) (for an even size, the one right of centre).
        let x0 = (x - 0.5).floor() as i64 - (size / 2) as i64;
        let y0 = (y - 0.5).floor() as i64 - (size / 2) as i64;
        let mut data = Vec::with_capacity(self.image.channels * size * size);
        for c in 0..self.image.channels {
            let plane = &self.image.data[c * w * h..(c + 1) * w * h];
            for row in y0..y0 + size as i64 {
                for col in x0..x0 + size as i64 {
                    let inside = (0..w as i64).contains(&col) && (0..h as i64).contains(&row);
                    data.push(if inside {
                        plane[row as usize * w + col as usize]
                    } else {
                        f32::NAN
                    });
                }
            }
        }
        Ok(Image::new(self.image.channels, size, size, data).expect("stamp dimensions match"))
    }
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
    let label = hdu
        .map(|h| h.to_string())
        .unwrap_or_else(|| "(first with data)".into());
    let fits_err = |hdu: String| {
        let path = path.to_path_buf();
        move |source| Error::Fits { path, hdu, source }
    };
    let mut file = FitsFile::open(path).map_err(fits_err(label.clone()))?;
    let (index, h) = match hdu {
        Some(sel) => {
            let h = match sel {
                Hdu::Index(i) => file.hdu(*i),
                Hdu::Name(n) => file.hdu(n.as_str()),
            }
            .map_err(fits_err(label.clone()))?;
            (h.number, h)
        }
        None => first_image_hdu(path, &mut file)?,
    };
    let label = hdu
        .map(|h| h.to_string())
        .unwrap_or_else(|| index.to_string());
    let mut image = read_plane(path, &mut file, &h, &label)?;
    if let Some(wsel) = weight {
        let wlabel = format!("{wsel} (weight)");
        let wh = match wsel {
            Hdu::Index(i) => file.hdu(*i),
            Hdu::Name(n) => file.hdu(n.as_str()),
        }
        .map_err(fits_err(wlabel.clone()))?;
        let w = read_plane(path, &mut file, &wh, &wlabel)?;
        let plane = image.height * image.width;
        if (w.height, w.width) != (image.height, image.width)
            || !(w.channels == 1 || w.channels == image.channels)
        {
            return Err(Error::format(
                path,
                Some(format!("HDU {wlabel}")),
                format!(
                    "weight is {}x{}x{}, the image {}x{}x{}",
                    w.channels, w.height, w.width, image.channels, image.height, image.width
                ),
            ));
        }
        for (i, v) in image.data.iter_mut().enumerate() {
            let wv = if w.channels == 1 {
                w.data[i % plane]
            } else {
                w.data[i]
            };
            if wv.is_nan() || wv <= 0.0 {
                *v = f32::NAN;
            }
        }
    }
    let wcs_keys = read_wcs_keys(&mut file, &h);
    Ok(Frame {
        image,
        hdu_index: index,
        wcs_keys,
    })
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

fn read_plane(path: &Path, file: &mut FitsFile, h: &FitsHdu, label: &str) -> Result<Image> {
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
    let fits_err = |source| Error::Fits {
        path: path.to_path_buf(),
        hdu: label.to_string(),
        source,
    };
    // A damaged header can claim more pixels than the file holds (even
    // tile-compressed ones, whose ratio stays far below 64): refuse before
    // allocating them.
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
    let pixels = channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .filter(|&n| (n as u64).saturating_mul(4) <= file_len.saturating_mul(64).max(1 << 20));
    let Some(pixels) = pixels else {
        return Err(Error::format(
            path,
            at(),
            format!("NAXISn {shape:?} claim more pixels than a file of {file_len} bytes can hold"),
        ));
    };
    // Reading a keyword makes this HDU cfitsio's current one for the raw read below.
    h.read_key::<i64>(file, "NAXIS").map_err(fits_err)?;
    let data = read_current_with_nan(file, pixels).map_err(fits_err)?;
    Image::new(channels, height, width, data)
        .ok_or_else(|| Error::format(path, at(), "image data size does not match NAXISn"))
}

/// Reads the current HDU's pixels as f32 with cfitsio's null substitution:
/// integer `BLANK` pixels and the nulls of tile-compressed images (`ZBLANK`,
/// NaNs of quantised floats) come back as NaN. The safe `fitsio` reader
/// passes no null value, which leaves them as ordinary numbers.
#[allow(unsafe_code)]
fn read_current_with_nan(file: &mut FitsFile, n: usize) -> fitsio::errors::Result<Vec<f32>> {
    let mut data = vec![0f32; n];
    let mut anynul = 0;
    let mut status = 0;
    // SAFETY: `data` holds exactly `n` elements, the number cfitsio writes; the
    // file pointer is valid for the duration of the borrow of `file`, and the
    // caller has made the image HDU current.
    unsafe {
        fitsio::sys::ffgpve(
            file.as_raw(),
            0,
            1,
            n as i64,
            f32::NAN,
            data.as_mut_ptr(),
            &mut anynul,
            &mut status,
        );
    }
    fitsio::errors::check_status(status).map(|_| data)
}

fn read_wcs_keys(file: &mut FitsFile, h: &FitsHdu) -> WcsKeys {
    let mut f = |k: &str| h.read_key::<f64>(file, k).ok();
    let keys = WcsKeys {
        ctype: [None, None],
        crpix: [f("CRPIX1"), f("CRPIX2")],
        crval: [f("CRVAL1"), f("CRVAL2")],
        cd: [f("CD1_1"), f("CD1_2"), f("CD2_1"), f("CD2_2")],
        pc: [f("PC1_1"), f("PC1_2"), f("PC2_1"), f("PC2_2")],
        cdelt: [f("CDELT1"), f("CDELT2")],
        crota2: f("CROTA2"),
    };
    let mut s = |k: &str| h.read_key::<String>(file, k).ok();
    WcsKeys {
        ctype: [s("CTYPE1"), s("CTYPE2")],
        ..keys
    }
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
